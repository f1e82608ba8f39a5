"""The storefront gateway: HTTP/JSON and Server-Sent Events in front of the gRPC services,
and the demo product page (``drape serve gateway``; README "Storefront gateway")."""
