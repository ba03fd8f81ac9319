// The console's own script: small behaviours htmx does not cover. No inline scripts (CSP).
(function () {
  "use strict";

  // a button with data-dismiss="#selector" empties that element (cancel a confirmation)
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-dismiss"));
    if (target) target.replaceChildren();
  });

  function flash(text) {
    var box = document.getElementById("flash");
    if (!box) {
      box = document.createElement("p");
      box.id = "flash";
      box.className = "error flash";
      box.setAttribute("role", "alert");
      document.querySelector("main").prepend(box);
    }
    box.textContent = text;
  }

  // a request that never got an answer (the replica restarting, the network)
  document.addEventListener("htmx:sendError", function () {
    flash("The console could not reach the server; retry in a moment.");
  });
  document.addEventListener("htmx:timeout", function () {
    flash("The server took too long to answer; retry in a moment.");
  });
})();
