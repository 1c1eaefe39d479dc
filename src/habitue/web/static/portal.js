// Registers the service worker that keeps the digital card available offline.
(function () {
  var body = document.body;
  if (!("serviceWorker" in navigator) || !body.dataset.sw) return;
  if (location.search.indexOf("signed_out=1") >= 0 && window.caches) {
    caches.keys().then(function (keys) { keys.forEach(function (k) { caches.delete(k); }); });
  }
  navigator.serviceWorker.register(body.dataset.sw, { scope: body.dataset.scope }).catch(function () {});
})();
// The invite page: share the link with the Web Share API where the device has it; copy it.
(function () {
  var box = document.getElementById("share-actions");
  if (!box) return;
  var link = document.getElementById("invite-link");
  var status = document.getElementById("share-status");
  var share = document.getElementById("share-button");
  var data = { title: box.dataset.title, text: box.dataset.text, url: link.value };
  if (navigator.share && (!navigator.canShare || navigator.canShare(data))) {
    share.hidden = false;
    share.addEventListener("click", function () { navigator.share(data).catch(function () {}); });
  }
  document.getElementById("copy-button").addEventListener("click", function () {
    var done = function () { status.textContent = box.dataset.copied; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link.value).then(done, function () { link.select(); document.execCommand("copy"); done(); });
    } else {
      link.select(); document.execCommand("copy"); done();
    }
  });
})();
