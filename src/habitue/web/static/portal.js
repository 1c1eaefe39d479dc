// Registers the service worker that keeps the digital card available offline.
(function () {
  var body = document.body;
  if (!("serviceWorker" in navigator) || !body.dataset.sw) return;
  if (location.search.indexOf("signed_out=1") >= 0 && window.caches) {
    caches.keys().then(function (keys) { keys.forEach(function (k) { caches.delete(k); }); });
  }
  navigator.serviceWorker.register(body.dataset.sw, { scope: body.dataset.scope }).catch(function () {});
})();
