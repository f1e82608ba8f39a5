"""CatalogService over gRPC (``drape serve catalog``), and the CLI side of batches
(``drape catalog batch|status``).

A thin adapter over :class:`~services.catalog_adapter.batches.BatchManager`: StartBatch
turns its source (inline products, a manifest, or "merchant M changed since T") into
events and queues them; WatchBatch/GetBatch/CancelBatch are the manager's
watch/get/cancel.
"""

from __future__ import annotations

import sys

import grpc

from drape.catalog.v1 import catalog_service_pb2 as pb
from drape.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from drape.common.v1 import operations_pb2
from services.common.errors import InvalidInputError, UnavailableError
from services.common.interceptors import cancel_token
from services.common.media import response_meta
from services.common.server import ServiceApp
from services.common.validation import OPERATION_ID_MAX, check_length

URI_MAX = 2048


def check_operation_id(request) -> str:
    """An OperationRef's id, bounded before any lookup (FIELD_TOO_LONG)."""
    return check_length(request.operation_id, "operation_id", OPERATION_ID_MAX)


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    """drape.catalog.v1.CatalogService."""

    def __init__(self, app: CatalogApp) -> None:
        self.app = app

    def _manager(self):
        if self.app.batches is None:
            raise UnavailableError("SERVICE_LOADING", "the catalog service is still starting")
        return self.app.batches

    def StartBatch(self, request, context):  # noqa: N802 - gRPC method name
        manager = self._manager()
        events = self.app.events_of(request)
        return manager.start(
            events,
            request_id=request.request_id,
            experiment=request.experiment,
            publish=request.publish,
            force=request.force,
            dry_run=request.dry_run,
        )

    def WatchBatch(self, request, context):  # noqa: N802
        check_operation_id(request)
        token = cancel_token(context)
        for op, progress, result in self._manager().watch(request.operation_id, token=token):
            msg = pb.WatchBatchResponse(operation=op, progress=progress)
            if result is not None:
                msg.result.CopyFrom(result)
            yield msg

    def GetBatch(self, request, context):  # noqa: N802
        check_operation_id(request)
        op, progress, result = self._manager().get(request.operation_id)
        resp = pb.GetBatchResponse(meta=response_meta(), operation=op, progress=progress)
        if result is not None:
            resp.result.CopyFrom(result)
        return resp

    def CancelBatch(self, request, context):  # noqa: N802
        check_operation_id(request)
        return self._manager().cancel(request.operation_id)


class CatalogApp(ServiceApp):
    """The catalog batch service: the catalog job (store, rosters, still and clip steps)
    loads and warms up once; persisted batches resume once it has.

    Args:
        settings: the settings (``DRAPE_CATALOG_*``).
        producer_factory: see :class:`~services.catalog_adapter.batches.BatchManager`.
    """

    name = "catalog"

    def __init__(self, settings, producer_factory=None) -> None:
        self.settings = settings
        self.producer_factory = producer_factory
        self.jobs = None
        self.batches = None

    def register(self, server: grpc.Server, ctx) -> list[str]:
        pb_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(self), server)
        return [pb.DESCRIPTOR.services_by_name["CatalogService"].full_name]

    def load(self) -> None:
        from services.catalog_adapter.batches import BatchDB, BatchManager
        from services.catalog_adapter.main import build_jobs

        self.jobs = build_jobs(self.settings)
        db = BatchDB(self.settings.catalog_batch_db)
        manager = BatchManager(self.jobs, self.settings, db, self.producer_factory)
        manager.open()
        self.batches = manager

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        close = getattr(getattr(self.jobs, "stills", None), "close", None)
        if close:
            close()

    def events_of(self, request: pb.StartBatchRequest) -> list:
        """The products a StartBatch asks for, from exactly one source.

        Raises:
            InvalidInputError: BATCH_SOURCE_CONFLICT, FIELD_TOO_LONG, MANIFEST_UNREADABLE,
                MANIFEST_INVALID, INVALID_EVENT (changed_since.merchant_id).
        """
        from services.catalog_adapter.batches import changed_products, read_manifest
        from services.common.errors import DrapeError

        sources = [n for n, on in (("products", bool(request.products)),
                                   ("manifest_uri", bool(request.manifest_uri)),
                                   ("changed_since", request.HasField("changed_since"))) if on]  # fmt: skip
        if len(sources) > 1:
            raise InvalidInputError(
                "BATCH_SOURCE_CONFLICT",
                f"give one of products, manifest_uri and changed_since, not {' and '.join(sources)}",
                field=sources[1],
            )
        if request.manifest_uri:
            uri = check_length(request.manifest_uri, "manifest_uri", URI_MAX)
            from services.catalog_adapter.batches import MANIFEST_MAX_BYTES
            from services.catalog_adapter.runners import ReferenceReader
            from services.catalog_adapter.store import s3_client_from_settings

            # A caller's URI: fetched under the same policy as the events' garment references.
            policy = getattr(self.jobs.read, "policy", None)
            reader = ReferenceReader(
                MANIFEST_MAX_BYTES,
                s3=s3_client_from_settings(self.settings),
                **({"policy": policy} if policy is not None else {}),
            )
            try:
                data = reader(uri, "manifest_uri")
            except DrapeError as exc:
                raise InvalidInputError(
                    "MANIFEST_UNREADABLE", exc.message, field="manifest_uri"
                ) from None
            return read_manifest(data, uri.split("?")[0])
        if request.HasField("changed_since"):
            cs = request.changed_since
            since = cs.since.ToNanoseconds() / 1e9 if cs.HasField("since") else None
            return changed_products(self.jobs.store, cs.merchant_id, since)
        return list(request.products)


# ---------------------------------------------------------------------- command line

_STATE = {
    pb.BATCH_ITEM_STATE_PENDING: "pending",
    pb.BATCH_ITEM_STATE_SUCCEEDED: "ok",
    pb.BATCH_ITEM_STATE_FAILED: "FAILED",
    pb.BATCH_ITEM_STATE_SKIPPED_STALE: "stale",
    pb.BATCH_ITEM_STATE_PLANNED: "planned",
}


def _stub(address: str, settings):
    """A CatalogService stub over a channel with the DRAPE_CLIENT_* TLS, mTLS and token
    settings (plain when none is set)."""
    n = settings.max_message_bytes
    opts = [("grpc.max_receive_message_length", n), ("grpc.max_send_message_length", n)]
    try:
        from services.common.security import client_channel
    except ImportError:  # a deployment without the client security settings
        channel = grpc.insecure_channel(address, options=opts)
    else:
        channel = client_channel(address, settings, opts)
    return channel, pb_grpc.CatalogServiceStub(channel)


def summary_table(result: pb.BatchResult, limit: int = 20, out=None) -> None:
    """Print the batch's totals, a count per failure reason, and the first ``limit``
    products that failed or were skipped (every product when ``limit`` is negative)."""
    out = out or sys.stdout
    by_reason: dict[str, int] = {}
    for item in result.items:
        if item.state == pb.BATCH_ITEM_STATE_FAILED:
            by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
    word = "would make" if result.dry_run else "made"
    print(
        f"products {len(result.items)}  handled {result.processed}  failed {result.failed}  "
        f"stale {result.skipped_stale}  assets {word} {result.created}  reused {result.reused}",
        file=out,
    )
    if by_reason:
        print(f"{'reason':32} {'products':>8}", file=out)
        for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]):
            print(f"{reason:32} {n:>8}", file=out)
    quiet = (pb.BATCH_ITEM_STATE_SUCCEEDED, pb.BATCH_ITEM_STATE_PLANNED)
    rows = [i for i in result.items if limit < 0 or i.state not in quiet]
    if not rows:
        return
    shown = rows if limit < 0 else rows[:limit]
    print(f"{'#':>5} {'merchant/sku':40} {'state':8} {'assets':>6}  reason", file=out)
    for i in shown:
        key = f"{i.merchant_id}/{i.sku}"[:40]
        if i.state == pb.BATCH_ITEM_STATE_PLANNED:
            detail = f"would make {i.created}, reuse {i.reused}"
        else:
            detail = i.reason or (i.asset_uris[0] if i.asset_uris else "")
        print(f"{i.index:>5} {key:40} {_STATE.get(i.state, '?'):8} "
              f"{i.created + i.reused:>6}  {detail}", file=out)  # fmt: skip
    if len(shown) < len(rows):
        print(f"... and {len(rows) - len(shown)} more (drape catalog status BATCH --all)", file=out)


def run_batch_cli(args, settings) -> int:
    """``drape catalog batch MANIFEST``: start a batch, follow it with a progress bar, print
    the summary. Exit status 0 when every product succeeded, 1 when some failed."""
    from pathlib import Path

    from tqdm import tqdm

    from services.catalog_adapter.batches import read_manifest

    req = pb.StartBatchRequest(
        request_id=args.request_id or "", publish=args.publish, force=args.force,
        dry_run=args.dry_run,
    )  # fmt: skip
    if args.merchant:
        req.changed_since.merchant_id = args.merchant
        if args.changed_since:
            req.changed_since.since.FromDatetime(_parse_time(args.changed_since))
        if args.events:
            print("drape catalog batch: give a MANIFEST or --merchant, not both", file=sys.stderr)
            return 2
    elif args.events:
        path = Path(args.events)
        req.products.extend(read_manifest(path.read_bytes(), path.name))
    else:
        print("drape catalog batch: give a MANIFEST (JSONL or CSV) or --merchant", file=sys.stderr)
        return 2
    channel, stub = _stub(args.server or settings.catalog_service_address, settings)
    try:
        op = _call(stub.StartBatch, req)
        print(f"batch {op.id}", file=sys.stderr)
        result, last = None, None
        bar = tqdm(total=op.progress.total, unit="sku", disable=args.quiet, file=sys.stderr)
        try:
            for msg in _stream(stub.WatchBatch, operations_pb2.OperationRef(operation_id=op.id)):
                p, last = msg.progress, msg
                bar.total = p.total
                bar.update(p.succeeded + p.failed + p.skipped_stale - bar.n)
                bar.set_postfix_str(
                    f"failed {p.failed}"
                    + (f", {p.throughput_per_second:.1f}/s" if p.throughput_per_second else "")
                    + (f", eta {p.eta_seconds:.0f}s" if p.eta_seconds > 0 else "")
                )
                if msg.HasField("result"):
                    result = msg.result
        except UnavailableError:
            # The server went away (restart, drain): the batch is kept and resumes there.
            print(f"lost the server; the batch goes on there: drape catalog status {op.id}",
                  file=sys.stderr)  # fmt: skip
            raise
        finally:
            bar.close()
        return _report(last, result, limit=20)
    finally:
        channel.close()


def run_status_cli(args, settings) -> int:
    """``drape catalog status BATCH``: the batch's state, counters and report."""
    if not args.events:
        print("drape catalog status: give the BATCH id", file=sys.stderr)
        return 2
    channel, stub = _stub(args.server or settings.catalog_service_address, settings)
    try:
        resp = _call(stub.GetBatch, operations_pb2.OperationRef(operation_id=args.events))
    finally:
        channel.close()
    p = resp.progress
    print(f"batch {resp.operation.id}: "
          f"{operations_pb2.OperationState.Name(resp.operation.state).removeprefix('OPERATION_STATE_')}"
          f"  {p.succeeded + p.failed + p.skipped_stale}/{p.total} handled, failed {p.failed}"
          + (f", {p.throughput_per_second:.2f}/s" if p.throughput_per_second > 0 else "")
          + (f", eta {p.eta_seconds:.0f}s" if p.eta_seconds > 0 else ""))  # fmt: skip
    return _report(resp, resp.result if resp.HasField("result") else None,
                   limit=-1 if args.all else 20)  # fmt: skip


def _report(msg, result, limit: int) -> int:
    op = msg.operation if msg is not None else None
    if op is not None and op.state == operations_pb2.OPERATION_STATE_FAILED:
        print(f"batch failed: {op.error.message}", file=sys.stderr)
        return 1
    if result is None:
        return 0 if op is not None and op.state != operations_pb2.OPERATION_STATE_CANCELLED else 1
    summary_table(result, limit=limit)
    rate = msg.progress.throughput_per_second
    print(f"elapsed {op.progress.elapsed_seconds:.1f} s"
          + (f", {rate:.2f} products/s" if rate > 0 else ""))  # fmt: skip
    if op.state == operations_pb2.OPERATION_STATE_CANCELLED:
        print("batch cancelled", file=sys.stderr)
        return 1
    return 1 if result.failed else 0


def _drape_error(err: grpc.RpcError):
    from services.catalog_adapter.runners import rpc_error

    exc = rpc_error(err)
    exc.message = err.details() or exc.message
    return exc


def _call(method, request):
    """A unary call whose gRPC error becomes the matching Drape error (the CLI prints it)."""
    try:
        return method(request, timeout=120)
    except grpc.RpcError as err:
        raise _drape_error(err) from None


def _stream(method, request):
    """A server stream, message by message, its gRPC error as a Drape error."""
    try:
        yield from method(request)
    except grpc.RpcError as err:
        raise _drape_error(err) from None


def _parse_time(text: str):
    """An ISO 8601 time (``2026-01-31``, ``2026-01-31T12:00:00Z``); UTC when no zone.

    Raises:
        InvalidInputError: TIME_INVALID.
    """
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            "TIME_INVALID", f"not an ISO 8601 time: {text[:40]!r}", field="--since"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


__all__ = ["CatalogApp", "CatalogServicer", "run_batch_cli", "run_status_cli", "summary_table"]
