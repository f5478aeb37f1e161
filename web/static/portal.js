/* Small progressive enhancements; every page works without this file. */
(function () {
  "use strict";

  function all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  all(".js-only").forEach(function (el) { el.classList.add("js-ready"); });

  // A form shown again with errors: bring the first wrong field into view.
  var firstBad = document.querySelector("[aria-invalid=true]");
  if (firstBad) { firstBad.focus({ preventScroll: true }); firstBad.scrollIntoView({ block: "center" }); }

  // Confirm dangerous actions (withdraw, revoke, end session, deactivate...).
  all("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });

  // Copy buttons: data-copy="#input-id".
  all("[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var input = document.querySelector(btn.getAttribute("data-copy"));
      if (!input) { return; }
      var done = function () {
        var old = btn.textContent;
        btn.textContent = btn.getAttribute("data-copied") || old;
        setTimeout(function () { btn.textContent = old; }, 1500);
      };
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });

  all("[data-print]").forEach(function (btn) {
    btn.addEventListener("click", function () { window.print(); });
  });

  // Repeatable respondent rows: show one empty row, add more on demand.
  all("[data-repeat]").forEach(function (box) {
    var max = parseInt(box.getAttribute("data-max") || "20", 10);
    var addBtn = box.querySelector("[data-add-row]");
    var rows = function () { return all(".repeat-row", box); };
    var isEmpty = function (row) {
      return all("input", row).every(function (i) { return !i.value; }) && !row.querySelector(".field-error");
    };
    var shown = 0;
    rows().forEach(function (row, i) {
      if (i === 0 || !isEmpty(row)) { shown = i; }
    });
    rows().forEach(function (row, i) { if (i > shown && isEmpty(row)) { row.hidden = true; } });
    if (!addBtn) { return; }
    addBtn.addEventListener("click", function () {
      var hidden = rows().filter(function (r) { return r.hidden; });
      if (hidden.length) {
        hidden[0].hidden = false;
        hidden[0].querySelector("input").focus();
      } else if (rows().length < max) {
        var last = rows()[rows().length - 1];
        var n = rows().length;
        var copy = last.cloneNode(true);
        copy.setAttribute("data-row", String(n));
        all("input", copy).forEach(function (input) {
          input.name = input.name.replace(/\.\d+\./, "." + n + ".");
          input.id = input.id.replace(/-\d+-/, "-" + n + "-");
          input.value = "";
          input.removeAttribute("aria-invalid");
        });
        all("label", copy).forEach(function (label) {
          label.htmlFor = label.htmlFor.replace(/-\d+-/, "-" + n + "-");
        });
        all(".field-error", copy).forEach(function (e) { e.remove(); });
        all(".has-error", copy).forEach(function (e) { e.classList.remove("has-error"); });
        var title = copy.querySelector(".row-title");
        if (title) { title.textContent = addBtn.getAttribute("data-label-template").replace("__N__", String(n + 1)); }
        last.parentNode.insertBefore(copy, addBtn);
        copy.querySelector("input").focus();
      }
      if (rows().length >= max && !rows().some(function (r) { return r.hidden; })) { addBtn.hidden = true; }
    });
  });

  // Evidence files: say at once when there are too many or one is too big (the server checks again).
  all("input[type=file][data-max-files]").forEach(function (input) {
    var err = input.parentNode.querySelector(".js-file-error");
    input.addEventListener("change", function () {
      var maxFiles = parseInt(input.getAttribute("data-max-files"), 10);
      var maxBytes = parseInt(input.getAttribute("data-max-bytes"), 10);
      var msg = "";
      if (input.files.length > maxFiles) {
        msg = input.getAttribute("data-msg-files");
      } else {
        for (var i = 0; i < input.files.length; i++) {
          if (input.files[i].size > maxBytes) { msg = input.getAttribute("data-msg-size"); }
        }
      }
      if (err) { err.textContent = msg; err.hidden = !msg; }
      input.setCustomValidity(msg);
    });
  });

  // Join-link form: show only the fields the chosen role needs.
  all("[data-invite-form]").forEach(function (form) {
    var role = form.querySelector("select[name=role]");
    var expert = form.querySelector("select[name=expert_id]");
    var sync = function () {
      var r = role.value;
      // An interpreter or support person: the party they accompany, and their own name.
      var linked = r === "interpreter" || r === "support";
      all(".for-party", form).forEach(function (el) { el.hidden = !(r === "party" || linked); });
      all(".for-expert", form).forEach(function (el) { el.hidden = r !== "expert"; });
      all(".for-observer", form).forEach(function (el) {
        el.hidden = !(r === "observer" || linked || (r === "expert" && expert && !expert.value));
      });
    };
    role.addEventListener("change", sync);
    if (expert) { expert.addEventListener("change", sync); }
    sync();
  });
})();
