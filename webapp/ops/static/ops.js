// The one script of the ops console: pages that ask for it (data-refresh on <body>)
// reload themselves every so many seconds, unless the operator is typing in a form.
// Every page works without it; it only won't refresh.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds) {
    return;
  }
  window.setInterval(function () {
    var active = document.activeElement;
    var typing = active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
    if (!typing && document.visibilityState !== "hidden") {
      window.location.reload();
    }
  }, seconds * 1000);
}());
