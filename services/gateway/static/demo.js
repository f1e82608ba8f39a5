// Drape demo product page: garment gallery, try-on, clip with progress.
//
// Plain ES module, no build step, no third-party code. Talks to the gateway's HTTP/JSON API
// on the same origin. Privacy: the shopper's photo and results live only in this page's
// memory (Blobs and object URLs, revoked when replaced); nothing goes to localStorage,
// sessionStorage, cookies or the URL. The API token, when the gateway asks for one, is kept
// in memory too and sent as `Authorization: Bearer`; that is why the clip's event stream is
// read with fetch() rather than EventSource, which cannot send headers.

const $ = (id) => document.getElementById(id);

const el = {
  gallery: $("gallery"),
  packshot: $("packshot"),
  packshotEmpty: $("packshot-empty"),
  packshotCaption: $("packshot-caption"),
  name: $("garment-name"),
  meta: $("garment-meta"),
  form: $("tryon"),
  drop: $("drop"),
  photo: $("photo"),
  photoLabel: $("photo-label"),
  chosen: $("chosen"),
  thumb: $("photo-thumb"),
  photoName: $("photo-name"),
  clear: $("clear"),
  tokenRow: $("token-row"),
  token: $("token"),
  tryonBtn: $("tryon-btn"),
  tryonStatus: $("tryon-status"),
  tryonWarnings: $("tryon-warnings"),
  still: $("still"),
  stillEmpty: $("still-empty"),
  stillBusy: $("still-busy"),
  motion: $("motion"),
  motionDesc: $("motion-desc"),
  clipBtn: $("clip-btn"),
  progressRow: $("progress-row"),
  progress: $("progress"),
  progressText: $("progress-text"),
  clipStatus: $("clip-status"),
  clipWarnings: $("clip-warnings"),
  clipBox: $("clip-box"),
  clipEmpty: $("clip-empty"),
};

const state = {
  garments: [],
  garment: null,       // the selected garment object
  photo: null,         // the shopper's File, in memory only
  thumbUrl: null,      // object URL of the photo's thumbnail
  still: null,         // Blob of the try-on still (JPEG), sent to /v1/clips
  stillUrl: null,
  stillFor: null,      // garment id the still shows
  clipUrls: [],        // object URLs of the clip (only when fetched with a token)
  clipAbort: null,     // AbortController of the running clip's event stream
  motions: [],
  tryonBusy: false,
  clipBusy: false,
  maxUpload: 0,        // the gateway's body limit when it says (0: unknown)
};

const CATEGORY_WORDS = {
  TOP: "Top",
  BOTTOM: "Bottom",
  DRESS: "Dress",
  OUTERWEAR: "Outerwear",
};

const STAGE_WORDS = {
  queued: "Waiting to start",
  running: "Starting",
  analyse: "Finding you in the photo",
  retarget: "Fitting the motion to you",
  render: "Drawing the frames",
  denoise: "Drawing the frames",
  decode: "Drawing the frames",
  encode: "Making the video",
  done: "Finishing",
  ready: "Ready",
};

// Refusals in words a shopper understands, keyed by the problem's `reason`. A function
// gets the problem and the page's context (the selected garment) for reasons whose advice
// depends on them.
const HALF_BODY_MOTION =
  "This motion needs a photo of you from head to feet. Pick a motion for half-body photos, or try a full-length photo.";
const REASONS = {
  NO_PERSON_DETECTED:
    "We couldn't find a person in your photo. Try a photo where you're clearly visible from head to hips.",
  PERSON_TOO_SMALL: "You're too small in this photo — step closer or crop it.",
  MULTIPLE_PERSONS:
    "We found more than one person in your photo. Try a photo with just you in it.",
  POSE_UNSUPPORTED: (p) => {
    const d = (p.detail || "").toLowerCase();
    if (d.includes("hip") || d.includes("bottom")) {
      return "Trousers, shorts and skirts need your hips and legs in the photo. Try a photo that shows you from head to at least the hips — head to feet is best.";
    }
    if (d.includes("shoulder")) {
      return "We need to see both of your shoulders. Try a photo where you face the camera with your upper body in view.";
    }
    if (d.includes("upright")) {
      return "Please use a photo where you stand or sit upright, facing the camera.";
    }
    return "Please face the camera: photos from the side or the back don't work for try-on.";
  },
  GARMENT_FIT_FAILED:
    "We couldn't make this garment sit right on your photo. Try a photo where you face the camera with your arms a little away from your body, or pick another garment.",
  GARMENT_CATEGORY_UNCERTAIN:
    "We couldn't tell what kind of garment this is. Please pick another one.",
  GARMENT_ID_UNKNOWN:
    "This garment is no longer available for try-on. Please reload the page.",
  GARMENT_NOT_FOUND: "We couldn't find the garment in its picture. Please pick another one.",
  IMAGE_TOO_LARGE: "Your photo file is too big. Try a smaller photo (a few megabytes at most).",
  IMAGE_TOO_MANY_PIXELS: "Your photo has too many pixels. Try a smaller version of it.",
  IMAGE_INVALID_DIMENSIONS: "Your photo is too small or oddly shaped. Try another photo.",
  IMAGE_EMPTY: "The file you chose is empty. Please choose a photo.",
  IMAGE_UNRECOGNIZED:
    "That file doesn't look like a photo we can read. Please use a JPEG, PNG or WebP picture.",
  IMAGE_FORMAT_UNSUPPORTED:
    "We can't read this kind of picture. Please use a JPEG, PNG or WebP photo.",
  IMAGE_TRUNCATED: "Your photo seems incomplete or damaged. Please try another file.",
  IMAGE_CORRUPT: "Your photo seems damaged. Please try another file.",
  IMAGE_TOO_COMPLEX: "Your photo is too large to process. Try a smaller version of it.",
  REQUEST_TOO_LARGE: "Your photo file is too big. Try a smaller photo (a few megabytes at most).",
  MESSAGE_TOO_LARGE: "Your photo file is too big. Try a smaller photo (a few megabytes at most).",
  MOTION_NOT_SUPPORTED_BY_PHOTO:
    "This motion can't be played with this photo — your arms need to be in view and a little away from your body. Try another motion.",
  MOTION_FRAMING_MISMATCH: HALF_BODY_MOTION,
  MOTION_NOT_FOUND: "This motion isn't available any more. Please pick another one.",
  CLIP_NOT_READY: "Your clip isn't ready yet. Please wait a moment.",
  OPERATION_NOT_FOUND: "This clip has expired. Please make it again.",
  UNAUTHENTICATED:
    "This shop's try-on service needs an API token. Enter it below and try again.",
  TOKEN_MISSING:
    "This shop's try-on service needs an API token. Enter it below and try again.",
  TOKEN_INVALID: "That API token wasn't accepted. Please check it and try again.",
  PERMISSION_DENIED: "That API token isn't allowed to do this. Please check it.",
  CONCURRENCY_LIMIT: "We're very busy right now. Please try again in a minute.",
  QUEUE_FULL: "We're very busy right now. Please try again in a minute.",
  RATE_LIMITED: "We're very busy right now. Please try again in a minute.",
  SERVER_DRAINING: "We're very busy right now. Please try again in a minute.",
  UNAVAILABLE: "Try-on is unavailable right now. Please try again in a minute.",
  DEADLINE_EXCEEDED: "That took too long. Please try again, perhaps with a smaller photo.",
  NETWORK: "We couldn't reach the shop. Check your connection and try again.",
  STREAM_LOST: "We lost track of your clip. Please try again.",
};

// Reasons the shopper can do nothing about except choose another photo get the service's
// detail under the friendly sentence only for the generic fallback (developers' help).
function explain(problem) {
  const entry = REASONS[problem.reason];
  if (typeof entry === "function") return { text: entry(problem), detail: null };
  if (typeof entry === "string") return { text: entry, detail: null };
  if (problem.status === 401) return { text: REASONS.UNAUTHENTICATED, detail: null };
  if (problem.status === 403) return { text: REASONS.PERMISSION_DENIED, detail: null };
  if (problem.status === 413) return { text: REASONS.REQUEST_TOO_LARGE, detail: null };
  if (problem.status === 429) return { text: REASONS.QUEUE_FULL, detail: null };
  if (problem.status === 503) return { text: REASONS.UNAVAILABLE, detail: null };
  if (problem.status === 504) return { text: REASONS.DEADLINE_EXCEEDED, detail: null };
  const detail = [problem.detail || problem.title, problem.reason && `(${problem.reason})`]
    .filter(Boolean)
    .join(" ");
  return { text: "Sorry, something went wrong.", detail: detail || null };
}

class Problem extends Error {
  constructor(body, status) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.problem = { ...body, status: body.status || status };
  }
}

function authHeaders() {
  const token = el.token.value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// fetch() with the token; a non-2xx answer becomes a Problem with the gateway's problem
// JSON (or a synthetic one when the body is not JSON), a network failure Problem NETWORK.
async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...options,
      headers: { ...authHeaders(), ...(options.headers || {}) },
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Problem({ reason: "NETWORK", detail: String(err.message || err) }, 0);
  }
  if (res.ok) return res;
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = { title: res.statusText };
  }
  if (res.status === 401) showTokenField();
  throw new Problem(body, res.status);
}

function showTokenField() {
  if (el.tokenRow.hidden) {
    el.tokenRow.hidden = false;
  }
}

// --- messages -------------------------------------------------------------------------

function say(region, kind, text, detail = null) {
  region.replaceChildren();
  if (!text) return;
  const p = document.createElement("p");
  p.className = `msg msg--${kind}`;
  p.textContent = text;
  if (detail) {
    const small = document.createElement("span");
    small.className = "msg__detail";
    small.textContent = detail;
    p.append(small);
  }
  region.append(p);
}

function sayProblem(region, err) {
  if (err instanceof Problem) {
    const { text, detail } = explain(err.problem);
    say(region, "error", text, detail);
    if (err.problem.status === 401) el.token.focus();
  } else {
    say(region, "error", "Sorry, something went wrong.", String(err && err.message ? err.message : err));
  }
}

// Notes that come with a result, in shoppers' words; those only an operator can act on
// are not shown. Others show the service's own message.
const WARNINGS = {
  MOST_PROMINENT_PERSON_CHOSEN:
    "There is more than one person in your photo: we dressed the one who stands out most.",
  MOTION_ARM_KEPT_STILL:
    "One arm stays still in the clip: it isn't fully in view, or it rests against your body.",
  MOTION_LEGS_KEPT_STILL: "Your legs stay still in the clip; the upper body moves.",
  MOTION_AMPLITUDE_LIMITED: "The movement is a little gentler than usual, to suit your photo.",
};
const OPERATOR_WARNINGS = new Set([
  "REFINER_SKIPPED",
  "DIFFUSION_OPTIONS_IGNORED",
  "CONTACT_SHADOW_IGNORED",
]);

function showWarnings(list, warnings) {
  list.replaceChildren();
  const seen = new Set();
  for (const w of warnings || []) {
    if (OPERATOR_WARNINGS.has(w.reason)) continue;
    const text = WARNINGS[w.reason] || w.message || w.reason;
    if (!text || seen.has(text)) continue;
    seen.add(text);
    const li = document.createElement("li");
    li.textContent = text;
    li.dataset.reason = w.reason || "";
    list.append(li);
  }
  list.hidden = list.children.length === 0;
}

// --- gallery --------------------------------------------------------------------------

function prettyCategory(c) {
  return CATEGORY_WORDS[String(c || "").toUpperCase()] || "";
}

async function loadGarments() {
  try {
    const res = await api("/v1/garments");
    const body = await res.json();
    state.garments = body.garments || [];
  } catch (err) {
    el.packshotEmpty.textContent = "Garments could not be loaded.";
    sayProblem(el.tryonStatus, err);
    return;
  }
  if (!state.garments.length) {
    el.packshotEmpty.textContent = "No garments to show.";
    return;
  }
  el.gallery.replaceChildren();
  for (const g of state.garments) {
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "swatch";
    btn.dataset.id = g.id;
    btn.setAttribute("aria-pressed", "false");
    const img = document.createElement("img");
    img.src = g.image_url;
    img.alt = "";
    img.width = 76;
    img.height = 76;
    img.loading = "lazy";
    const label = document.createElement("span");
    label.textContent = g.name;
    btn.append(img, label);
    btn.addEventListener("click", () => selectGarment(g.id));
    li.append(btn);
    el.gallery.append(li);
  }
  selectGarment(state.garments[0].id, { quiet: true });
}

function selectGarment(id, { quiet = false } = {}) {
  const g = state.garments.find((x) => x.id === id);
  if (!g) return;
  state.garment = g;
  for (const b of el.gallery.querySelectorAll(".swatch")) {
    b.setAttribute("aria-pressed", String(b.dataset.id === id));
  }
  el.name.textContent = g.name;
  el.meta.textContent = [prettyCategory(g.category), "Try it on with your own photo"]
    .filter(Boolean)
    .join(" · ");
  el.packshot.src = g.image_url;
  el.packshot.alt = `${g.name}, laid flat`;
  el.packshot.hidden = false;
  el.packshotEmpty.hidden = true;
  el.packshotCaption.textContent = g.name;
  if (!quiet) say(el.tryonStatus, "info", "");
  updateButtons();
}

// --- photo ----------------------------------------------------------------------------

function setPhoto(file) {
  if (state.thumbUrl) URL.revokeObjectURL(state.thumbUrl);
  state.thumbUrl = null;
  state.photo = file || null;
  if (file) {
    state.thumbUrl = URL.createObjectURL(file);
    el.thumb.src = state.thumbUrl;
    el.photoName.textContent = file.name || "Your photo";
    el.chosen.hidden = false;
    el.photoLabel.textContent = "Choose another photo";
  } else {
    el.thumb.removeAttribute("src");
    el.photoName.textContent = "";
    el.chosen.hidden = true;
    el.photo.value = "";
    el.photoLabel.textContent = "Choose a photo";
  }
  say(el.tryonStatus, "info", "");
  showWarnings(el.tryonWarnings, []);
  updateButtons();
}

function acceptPhoto(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setPhoto(null);
    say(el.tryonStatus, "error", REASONS.IMAGE_UNRECOGNIZED);
    return;
  }
  // The form adds a little around the photo; refuse what cannot fit before uploading it.
  if (state.maxUpload && file.size > state.maxUpload - 64 * 1024) {
    setPhoto(null);
    const mb = Math.max(1, Math.floor(state.maxUpload / (1024 * 1024)));
    say(el.tryonStatus, "error", `Your photo file is too big. Please use a photo under ${mb} MB.`);
    return;
  }
  setPhoto(file);
}

el.photo.addEventListener("change", () => acceptPhoto(el.photo.files[0]));
el.clear.addEventListener("click", () => {
  setPhoto(null);
  el.photo.focus();
});

// Drag and drop onto the photo area (the file input stays the keyboard path).
for (const type of ["dragenter", "dragover"]) {
  el.drop.addEventListener(type, (e) => {
    if (!e.dataTransfer || ![...e.dataTransfer.types].includes("Files")) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    el.drop.classList.add("is-over");
  });
}
el.drop.addEventListener("dragleave", (e) => {
  if (!el.drop.contains(e.relatedTarget)) el.drop.classList.remove("is-over");
});
el.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  el.drop.classList.remove("is-over");
  acceptPhoto(e.dataTransfer && e.dataTransfer.files[0]);
});

// --- try-on ---------------------------------------------------------------------------

function updateButtons() {
  el.tryonBtn.disabled = state.tryonBusy || !state.photo || !state.garment;
  el.clipBtn.disabled =
    state.clipBusy || state.tryonBusy || !state.still || state.motions.length === 0;
  el.motion.disabled = state.clipBusy || state.motions.length === 0;
}

function base64ToBlob(b64, type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type });
}

function setStill(blob, garment) {
  if (state.stillUrl) URL.revokeObjectURL(state.stillUrl);
  state.still = blob;
  state.stillUrl = blob ? URL.createObjectURL(blob) : null;
  state.stillFor = garment ? garment.id : null;
  if (blob) {
    el.still.src = state.stillUrl;
    el.still.alt = `You wearing the ${garment.name}`;
    el.still.hidden = false;
    el.stillEmpty.hidden = true;
  } else {
    el.still.removeAttribute("src");
    el.still.alt = "";
    el.still.hidden = true;
    el.stillEmpty.hidden = false;
  }
}

el.form.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (state.tryonBusy) return;
  if (!state.photo) {
    say(el.tryonStatus, "error", "Please choose a photo of yourself first.");
    el.photo.focus();
    return;
  }
  const garment = state.garment;
  const form = new FormData();
  form.append("photo", state.photo, state.photo.name || "photo");
  form.append("garment_id", garment.id);
  state.tryonBusy = true;
  updateButtons();
  el.stillBusy.hidden = false;
  el.form.setAttribute("aria-busy", "true");
  say(el.tryonStatus, "info", `Putting the ${garment.name} on you…`);
  showWarnings(el.tryonWarnings, []);
  try {
    const res = await api("/v1/tryon", { method: "POST", body: form });
    const body = await res.json();
    const blob = base64ToBlob(body.still.data, body.still.content_type || "image/jpeg");
    stopClip();
    resetClip();
    setStill(blob, garment);
    say(el.tryonStatus, "ok", `Here you are in the ${garment.name}. Make a clip to see it move.`);
    showWarnings(el.tryonWarnings, body.warnings);
  } catch (err) {
    sayProblem(el.tryonStatus, err);
  } finally {
    state.tryonBusy = false;
    el.stillBusy.hidden = true;
    el.form.removeAttribute("aria-busy");
    updateButtons();
  }
});

// --- motions and clips ----------------------------------------------------------------

function prettyName(name) {
  const s = String(name).replace(/[-_]+/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function isUpperBody(m) {
  return /upper|half/i.test(String(m.framing || ""));
}

async function loadMotions() {
  let body;
  try {
    const res = await api("/v1/motions");
    body = await res.json();
    state.motions = body.motions || [];
  } catch (err) {
    sayProblem(el.clipStatus, err);
    return;
  }
  el.motion.replaceChildren();
  // The gateway's default motion, when it says which: `default` at the top or on a motion.
  let named = body.default || (state.motions.find((m) => m.default === true) || {}).name;
  if (!state.motions.some((m) => m.name === named)) named = "";
  if (!named) {
    // Without that, the first choice lets the gateway pick (the form then names none).
    const opt = document.createElement("option");
    opt.value = "";
    opt.textContent = "Our pick";
    el.motion.append(opt);
  }
  for (const m of state.motions) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = prettyName(m.name) + (isUpperBody(m) ? "" : " (full length)");
    el.motion.append(opt);
  }
  el.motion.value = named;
  describeMotion();
  updateButtons();
}

function describeMotion() {
  const m = state.motions.find((x) => x.name === el.motion.value);
  el.motionDesc.textContent = m
    ? m.description || ""
    : "A gentle movement that suits most photos.";
}
el.motion.addEventListener("change", describeMotion);

function setProgress(fraction, stage) {
  // Never backwards within a clip: a backend whose stages each count from zero would
  // otherwise make the bar jump back, which reads as a fault to a shopper.
  const now = Math.max(0, Math.min(100, Math.round((Number(fraction) || 0) * 100)));
  const pct = Math.max(now, el.progressRow.classList.contains("is-idle") ? 0 : el.progress.value);
  const words = STAGE_WORDS[stage] || (stage ? prettyName(stage) : "");
  el.progressRow.classList.remove("is-idle");
  el.progress.value = pct;
  el.progress.setAttribute("aria-valuenow", String(pct));
  const text = words ? `${pct} % · ${words}` : `${pct} %`;
  el.progress.setAttribute("aria-valuetext", text);
  el.progressText.textContent = text;
}

function resetClip() {
  for (const u of state.clipUrls) URL.revokeObjectURL(u);
  state.clipUrls = [];
  el.clipBox.querySelector("video")?.remove();
  el.clipEmpty.hidden = false;
  el.progressRow.classList.add("is-idle");
  el.progress.value = 0;
  el.progress.setAttribute("aria-valuenow", "0");
  el.progress.setAttribute("aria-valuetext", "Not started");
  el.progressText.textContent = "Not started";
  say(el.clipStatus, "info", "");
  showWarnings(el.clipWarnings, []);
}

function stopClip() {
  if (state.clipAbort) state.clipAbort.abort();
  state.clipAbort = null;
  state.clipBusy = false;
}

// Server-Sent Events over fetch(): yields {event, data} for each event block; comments
// (": ping") and blocks without data are skipped. Bounded: one block at most 1 MiB.
async function* readEvents(url, signal) {
  const res = await api(url, { headers: { Accept: "text/event-stream" }, signal });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      // Keep a trailing "\r" until the next chunk says whether "\n" follows it.
      const keep = buf.endsWith("\r") ? 1 : 0;
      let text = buf.slice(0, buf.length - keep).replace(/\r\n?/g, "\n");
      buf = buf.slice(buf.length - keep);
      let cut;
      while ((cut = text.indexOf("\n\n")) >= 0) {
        const block = text.slice(0, cut);
        text = text.slice(cut + 2);
        const ev = parseBlock(block);
        if (ev) yield ev;
      }
      buf = text + buf;
      if (buf.length > 1 << 20) throw new Problem({ reason: "STREAM_LOST", detail: "event too long" }, 0);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
  return { event, data: parsed };
}

async function showVideo(videoUrl, posterUrl, signal) {
  let src = videoUrl;
  let poster = posterUrl;
  // With a token the media requests need the Authorization header, which <video src>
  // cannot send: fetch the (small) clip and poster and play them from memory.
  if (el.token.value.trim()) {
    const [v, p] = await Promise.all([
      api(videoUrl, { signal }).then((r) => r.blob()),
      api(posterUrl, { signal }).then((r) => r.blob()),
    ]);
    src = URL.createObjectURL(v);
    poster = URL.createObjectURL(p);
    state.clipUrls.push(src, poster);
  }
  const video = document.createElement("video");
  video.muted = true; // the property, not only the attribute, lets autoplay start
  video.defaultMuted = true;
  video.autoplay = true;
  video.loop = true;
  video.playsInline = true;
  video.setAttribute("muted", "");
  video.setAttribute("playsinline", "");
  video.poster = poster;
  video.src = src;
  const m = state.motions.find((x) => x.name === el.motion.value);
  const who = state.garment ? `You wearing the ${state.garment.name}` : "Your try-on";
  video.setAttribute("aria-label", `${who}, moving${m ? ` (${prettyName(m.name)})` : ""}`);
  el.clipEmpty.hidden = true;
  el.clipBox.querySelector("video")?.remove();
  el.clipBox.append(video);
  video.play().catch(() => {
    // Autoplay refused (e.g. data saver): the shopper can start it with the controls.
    video.controls = true;
  });
}

async function watchClip(clip, signal) {
  // The stream can drop (proxies, sleep): reconnect a few times, then ask the status.
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      for await (const { event, data } of readEvents(clip.events_url, signal)) {
        if (event === "progress") {
          setProgress(data.progress, data.stage);
        } else if (event === "done") {
          setProgress(1, "ready");
          return { ok: true, data };
        } else if (event === "error") {
          return { ok: false, problem: data };
        }
      }
    } catch (err) {
      if (err.name === "AbortError") throw err;
      if (err instanceof Problem && err.problem.reason !== "NETWORK") throw err;
    }
    const res = await api(clip.status_url, { signal });
    const st = await res.json();
    if (st.state === "SUCCEEDED") return { ok: true, data: { ...clip, warnings: st.warnings } };
    if (st.error) return { ok: false, problem: st.error };
    if (st.state === "FAILED" || st.state === "CANCELLED") {
      return { ok: false, problem: { reason: "STREAM_LOST", detail: st.state } };
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { ok: false, problem: { reason: "STREAM_LOST" } };
}

el.clipBtn.addEventListener("click", async () => {
  if (state.clipBusy || !state.still) return;
  stopClip();
  resetClip();
  const abort = new AbortController();
  state.clipAbort = abort;
  state.clipBusy = true;
  updateButtons();
  setProgress(0, "queued");
  say(el.clipStatus, "info", "Making your clip — this takes a little while.");
  try {
    const form = new FormData();
    form.append("still", state.still, "still.jpg");
    if (el.motion.value) form.append("motion", el.motion.value);
    const res = await api("/v1/clips", { method: "POST", body: form, signal: abort.signal });
    const clip = await res.json();
    const result = await watchClip(clip, abort.signal);
    if (result.ok) {
      await showVideo(
        result.data.video_url || clip.video_url,
        result.data.poster_url || clip.poster_url,
        abort.signal,
      );
      say(el.clipStatus, "ok", "Your clip is ready.");
      showWarnings(el.clipWarnings, result.data.warnings);
    } else {
      el.progressRow.classList.add("is-idle");
      sayProblem(el.clipStatus, new Problem(result.problem, result.problem.status || 0));
    }
  } catch (err) {
    if (err.name !== "AbortError") {
      el.progressRow.classList.add("is-idle");
      sayProblem(el.clipStatus, err);
    }
  } finally {
    if (state.clipAbort === abort) {
      state.clipAbort = null;
      state.clipBusy = false;
      updateButtons();
    }
  }
});

// Leaving the page: stop the stream, drop the in-memory copies.
window.addEventListener("pagehide", () => {
  stopClip();
  if (state.thumbUrl) URL.revokeObjectURL(state.thumbUrl);
  if (state.stillUrl) URL.revokeObjectURL(state.stillUrl);
  for (const u of state.clipUrls) URL.revokeObjectURL(u);
});

// A token entered after a 401: load what the page could not load without it.
el.token.addEventListener("change", () => {
  say(el.tryonStatus, "info", "");
  if (!state.garments.length) loadGarments();
  if (!state.motions.length) loadMotions();
});

// The gateway's page settings (optional): whether it asks for a token, the upload limit.
async function loadConfig() {
  try {
    const res = await fetch("/demo/config.json");
    if (!res.ok) return;
    const cfg = await res.json();
    if (cfg.auth) showTokenField();
    if (Number.isFinite(cfg.max_upload_bytes)) state.maxUpload = cfg.max_upload_bytes;
  } catch {
    // Without it the page learns both from the API's answers (401, 413).
  }
}

updateButtons();
loadConfig().then(() => {
  // With a token required and none entered yet, wait for it instead of collecting 401s.
  if (!el.tokenRow.hidden && !el.token.value.trim()) {
    el.packshotEmpty.textContent = "Enter the API token to see the garments.";
    return;
  }
  loadGarments();
  loadMotions();
});
