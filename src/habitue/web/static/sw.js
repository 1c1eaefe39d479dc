// Service worker of the member portal: the card page is fetched from the network when
// possible and kept in a cache, so that it still opens at the till without a connection.
const BASE = "__BASE__";
const CACHE = "habitue-card-v1";
const CARD = BASE + "/card";
const ASSETS = ["/static/web.css", "/static/portal.js", "/static/vendor/htmx-2.0.11.min.js"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== location.origin) return;
  if (url.pathname === CARD) {
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok && !response.redirected) {
            const copy = response.clone();
            caches.open(CACHE).then((c) => c.put(CARD, copy));
          }
          return response;
        })
        .catch(() => caches.match(CARD).then((hit) => hit || Response.error()))
    );
  } else if (ASSETS.includes(url.pathname)) {
    event.respondWith(caches.match(url.pathname).then((hit) => hit || fetch(request)));
  }
});
