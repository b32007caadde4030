// ajar dashboard: live countdowns of open ports. Every page works without this script: each
// <time class="countdown" datetime="…Z"> already says "until 14:05 UTC"; this only turns that into the
// time left, once a second. The elements carry aria-live="off", so screen readers are not told of each tick.
(function () {
  "use strict";

  function twoDigits(n) {
    return n < 10 ? "0" + n : String(n);
  }

  // "12:34 left" under an hour, "1 h 02 min left" above, "ended" once past.
  function timeLeft(ms) {
    if (ms <= 0) {
      return "ended";
    }
    var seconds = Math.ceil(ms / 1000);
    if (seconds < 3600) {
      return Math.floor(seconds / 60) + ":" + twoDigits(seconds % 60) + " left";
    }
    var minutes = Math.floor(seconds / 60);
    return Math.floor(minutes / 60) + " h " + twoDigits(minutes % 60) + " min left";
  }

  var timer = null;

  function tick() {
    var now = Date.now();
    var running = 0;
    var all = document.querySelectorAll("time.countdown[datetime]");
    for (var i = 0; i < all.length; i++) {
      var el = all[i];
      var end = Date.parse(el.getAttribute("datetime"));
      if (isNaN(end)) {
        continue; // leave the server's text as it is
      }
      var text = timeLeft(end - now);
      if (el.textContent !== text) {
        el.textContent = text;
      }
      if (end > now) {
        running++;
      } else {
        el.classList.add("ended");
      }
    }
    // Nothing left to count: stop waking up.
    if (running === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    return running;
  }

  if (tick() > 0) {
    timer = setInterval(tick, 1000);
  }
})();
