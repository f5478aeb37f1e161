// Synchronized playback: one clock drives every participant's video; a file plays only
// while the clock is inside its [offset, offset + duration] span, so gaps stay gaps.
(function () {
  "use strict";
  var dataEl = document.getElementById("player-data");
  if (!dataEl) return;
  var data = JSON.parse(dataEl.textContent);
  var S = JSON.parse(document.getElementById("player-strings").textContent);
  var grid = document.getElementById("player-grid");
  var seek = document.getElementById("seek");
  var clock = document.getElementById("clock");
  var playBtn = document.getElementById("play-btn");
  var runSelect = document.getElementById("run-select");
  var run, tiles = [], total = 0, t = 0, playing = false, last = null;

  function fmt(sec) {
    sec = Math.max(0, Math.floor(sec));
    var m = Math.floor(sec / 60), s = sec % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function load(index) {
    run = data.runs[index];
    grid.innerHTML = "";
    tiles = [];
    var byPerson = {};
    run.files.forEach(function (f) {
      (byPerson[f.participant_id] = byPerson[f.participant_id] || []).push(f);
    });
    total = 0;
    Object.keys(byPerson).forEach(function (pid) {
      var segs = byPerson[pid].sort(function (a, b) { return a.offset - b.offset; });
      segs.forEach(function (f) { total = Math.max(total, f.offset + f.duration); });
      var tile = el("figure", "player-tile");
      tile.dataset.participant = pid;
      var video = document.createElement("video");
      video.playsInline = true;
      video.preload = "auto";
      var gap = el("div", "player-gap", S.gap);
      var cap = el("figcaption", null, (segs[0].name || pid) + (segs[0].role ? " · " + (S.roles[segs[0].role] || segs[0].role) : ""));
      tile.appendChild(video); tile.appendChild(gap); tile.appendChild(cap);
      grid.appendChild(tile);
      tiles.push({ pid: pid, segs: segs, video: video, gap: gap, current: null });
    });
    grid.dataset.count = String(tiles.length);
    renderSide();
    t = 0;
    apply(true);
  }

  function renderSide() {
    var list = document.getElementById("timeline");
    list.innerHTML = "";
    var start = Date.parse(run.started_at);
    (data.timeline || []).forEach(function (e) {
      var at = (Date.parse(e.at) - start) / 1000;
      var li = el("li");
      var label = (S.actions[e.action] || e.action);
      var who = (e.data && (e.data.name || "")) || (e.actor_type === "system" ? "" : e.actor || "");
      var extra = e.action === "recording.consent" ? " (" + (e.data.agree ? S.agree : S.refuse) + ")" : "";
      var b = el("button", "linklike", (at > -1 ? fmt(at) : "-" + fmt(-at)) + "  " + label + " " + who + extra);
      b.type = "button";
      b.addEventListener("click", function () { t = Math.min(Math.max(at, 0), total); apply(true); });
      li.appendChild(b);
      list.appendChild(li);
    });
    var files = document.getElementById("files");
    files.innerHTML = "";
    run.files.forEach(function (f) {
      var li = el("li", "mono small", (f.name || f.participant_id) + " #" + f.segment + "  " + fmt(f.offset) +
        "–" + fmt(f.offset + f.duration) + "  sha256 " + f.sha256.slice(0, 16) + "…");
      files.appendChild(li);
    });
  }

  function apply(force) {
    tiles.forEach(function (tile) {
      var seg = null;
      for (var i = 0; i < tile.segs.length; i++) {
        var f = tile.segs[i];
        if (t >= f.offset && t < f.offset + f.duration) { seg = f; break; }
      }
      if (!seg) {
        tile.gap.hidden = false;
        tile.video.hidden = true;
        if (!tile.video.paused) tile.video.pause();
        tile.current = null;
        return;
      }
      tile.gap.hidden = true;
      tile.video.hidden = false;
      if (tile.current !== seg) {
        tile.current = seg;
        tile.video.src = seg.url;
        force = true;
      }
      var want = t - seg.offset;
      if (force || Math.abs(tile.video.currentTime - want) > 0.35) {
        try { tile.video.currentTime = want; } catch (e) { /* not seekable yet */ }
      }
      if (playing && tile.video.paused) tile.video.play().catch(function () {});
      if (!playing && !tile.video.paused) tile.video.pause();
    });
    seek.value = total ? Math.round(1000 * t / total) : 0;
    clock.textContent = fmt(t) + " / " + fmt(total);
  }

  function tick(now) {
    if (playing) {
      if (last != null) t = Math.min(total, t + (now - last) / 1000);
      last = now;
      if (t >= total) { playing = false; playBtn.textContent = S.play; }
      apply(false);
      requestAnimationFrame(tick);
    } else {
      last = null;
    }
  }

  playBtn.addEventListener("click", function () {
    playing = !playing;
    playBtn.textContent = playing ? S.pause : S.play;
    if (playing) { if (t >= total) t = 0; last = null; requestAnimationFrame(tick); }
    apply(true);
  });
  seek.addEventListener("input", function () { t = total * seek.value / 1000; apply(true); });
  if (runSelect) runSelect.addEventListener("change", function () { playing = false; load(+runSelect.value); });
  window.mediationPlayer = { seek: function (s) { t = s; apply(true); }, get time() { return t; },
                             get total() { return total; }, tiles: function () { return tiles; } };
  load(0);
})();
