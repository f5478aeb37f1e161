/* Handwritten signature pad for the agreement pages (pointer events: finger, pen or mouse).
 * A [data-signature-pad] block holds a canvas, a clear button and a hidden "signature" input;
 * on submit of its form the drawing is put into the input as a PNG data URL. An empty pad
 * stops the submit with a message. Also: the staff draft form's template switch. */
(function () {
  "use strict";

  function setupPad(box) {
    var canvas = box.querySelector("canvas");
    var input = box.querySelector("input[name=signature]");
    var error = box.querySelector("[data-pad-error]");
    var ctx = canvas.getContext("2d");
    var strokes = 0;
    var drawing = false;
    var last = null;

    function size() {
      var rect = canvas.getBoundingClientRect();
      var ratio = Math.max(window.devicePixelRatio || 1, 1);
      var w = Math.round(rect.width * ratio), h = Math.round(rect.height * ratio);
      // Resizing clears the canvas: only when the size really changed, and never to nothing
      // (a hidden or collapsed pad measures 0 x 0).
      if (!w || !h || (w === canvas.width && h === canvas.height)) { return; }
      // Keep the ink through the resize synchronously: an async redraw would leave a blank
      // canvas for a moment, and a submit in that moment would send an empty signature.
      var copy = null;
      if (strokes && canvas.width && canvas.height) {
        copy = document.createElement("canvas");
        copy.width = canvas.width;
        copy.height = canvas.height;
        copy.getContext("2d").drawImage(canvas, 0, 0);
      }
      canvas.width = w;
      canvas.height = h;
      if (copy) { ctx.drawImage(copy, 0, 0, w, h); }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2.6;
    }

    function point(ev) {
      var rect = canvas.getBoundingClientRect();
      return { x: ev.clientX - rect.left, y: ev.clientY - rect.top, p: ev.pressure || 0.5 };
    }

    canvas.addEventListener("pointerdown", function (ev) {
      ev.preventDefault();
      drawing = true;
      last = point(ev);
      if (canvas.setPointerCapture) { try { canvas.setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ } }
      ctx.beginPath();
      ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fillStyle = "#111";
      ctx.fill();
      strokes += 1;
      box.classList.add("has-ink");
      if (error) { error.hidden = true; }
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!drawing) { return; }
      ev.preventDefault();
      var events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
      if (!events.length) { events = [ev]; }
      events.forEach(function (e) {
        var pt = point(e);
        ctx.lineWidth = 1.6 + 2.4 * (e.pointerType === "pen" ? pt.p : 0.5);
        ctx.beginPath();
        ctx.moveTo(last.x, last.y);
        ctx.lineTo(pt.x, pt.y);
        ctx.stroke();
        last = pt;
      });
    });
    function end() { drawing = false; last = null; }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("pointerleave", end);

    var clear = box.querySelector("[data-pad-clear]");
    if (clear) {
      clear.addEventListener("click", function () {
        ctx.save();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        ctx.restore();
        strokes = 0;
        input.value = "";
        box.classList.remove("has-ink");
      });
    }

    var form = box.closest("form");
    if (form) {
      form.addEventListener("submit", function (ev) {
        if (!strokes) {
          ev.preventDefault();
          if (error) { error.textContent = box.getAttribute("data-empty-msg"); error.hidden = false; }
          canvas.focus();
          return;
        }
        input.value = canvas.toDataURL("image/png");
        var btn = form.querySelector("button[type=submit]");
        if (btn) { setTimeout(function () { btn.disabled = true; }, 0); }
      });
    }
    size();
    window.addEventListener("resize", function () { if (!drawing) { size(); } });
    box.signaturePad = { strokes: function () { return strokes; } };
  }

  function setupTemplateSwitch(form) {
    var select = form.querySelector("select[name=template]");
    var terms = form.querySelector("textarea[name=terms]");
    var data = document.getElementById("template-terms");
    if (!select || !terms || !data) { return; }
    var templates = JSON.parse(data.textContent || "{}");
    var original = terms.value;
    select.addEventListener("change", function () {
      var next = templates[select.value];
      if (next === undefined) { return; }
      if (terms.value.trim() === "" || terms.value === original || Object.keys(templates).some(function (k) { return templates[k] === terms.value; })) {
        terms.value = next;
        original = next;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-signature-pad]"), setupPad);
    Array.prototype.forEach.call(document.querySelectorAll("[data-template-form]"), setupTemplateSwitch);
  });
})();
