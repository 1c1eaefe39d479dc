// Service worker of the member portal: the card page is fetched from the network when
// possible and kept in a cache, so that it still opens at the till without a connection;
// any other page of the portal opened offline shows the portal's offline page.
const BASE = "__BASE__";
const CACHE = "habitue-card-v2";
const CARD = BASE + "/card";
const OFFLINE = BASE + "/offline";
const ASSETS = ["/static/web.css", "/static/portal.js", "/static/vendor/htmx-2.0.11.min.js"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((c) => c.addAll(ASSETS.concat([OFFLINE]))).then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE && k.startsWith("habitue-card")).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
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
  } else if (request.mode === "navigate" && url.pathname.startsWith(BASE + "/")) {
    event.respondWith(
      fetch(request).catch(() => caches.match(OFFLINE).then((hit) => hit || Response.error()))
    );
  }
});
