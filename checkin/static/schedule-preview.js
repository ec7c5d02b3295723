// Live preview of a schedule form: as the admin changes it, fetch the server-rendered list of
// the next sends and put it in the page's live region. Progressive enhancement: without this
// script the form's "Preview" button shows the same list on a full page.
(function () {
  "use strict";
  var form = document.getElementById("schedule-form");
  var target = document.getElementById("schedule-preview");
  if (!form || !target || !window.fetch) { return; }
  var timer = null;
  var latest = 0;

  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");
    var asked = ++latest;
    fetch(form.dataset.previewUrl + "?" + params.toString(), {
      credentials: "same-origin",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      // A session that timed out is redirected to sign-in: keep the page, show nothing new.
      return response.ok && !response.redirected ? response.text() : null;
    }).then(function (html) {
      // Answers can arrive out of order: only the newest question's answer is shown.
      if (html !== null && asked === latest) { target.innerHTML = html; }
    }).catch(function () { /* offline: keep the last preview */ });
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 250);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
}());
