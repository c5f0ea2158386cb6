// /try: draw on the board's 448x448 canvas with the firmware's brush (dc_draw_segment, ported
// pixel for pixel), show what the board would show for it (POST /api/try), save corrections as
// labelled custom digits and run `mnistp4 update` in the background.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const pad = $("pad");
  const SIDE = pad.width;
  const RADIUS = Number(pad.dataset.brushRadius);
  const PERIOD_MS = 120;            // the firmware re-runs at most every 120 ms while a stroke goes on
  const grey = new Uint8Array(SIDE * SIDE);   // white ink on black, as the board's s_grey
  const ctx = pad.getContext("2d");
  const st = { down: false, prev: null, last: 0, inFlight: false, again: false, mode: "softmax",
               answer: null, strokes: 0, polling: null };

  function setStatus(id, text, kind) {
    const s = $(id);
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  // dc_draw_segment: pixels within radius of the segment take max(pixel, value), exact integers
  function drawSegment(x0, y0, x1, y1, r, value) {
    const xmin = Math.max(0, Math.min(x0, x1) - r), xmax = Math.min(SIDE - 1, Math.max(x0, x1) + r);
    const ymin = Math.max(0, Math.min(y0, y1) - r), ymax = Math.min(SIDE - 1, Math.max(y0, y1) + r);
    const dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy, r2 = r * r;
    for (let y = ymin; y <= ymax; y++) {
      for (let x = xmin; x <= xmax; x++) {
        const px = x - x0, py = y - y0, dot = px * dx + py * dy;
        let inside;
        if (len2 === 0 || dot <= 0) inside = px * px + py * py <= r2;
        else if (dot >= len2) { const qx = x - x1, qy = y - y1; inside = qx * qx + qy * qy <= r2; }
        else { const cross = px * dy - py * dx; inside = cross * cross <= r2 * len2; }
        const i = y * SIDE + x;
        if (inside && grey[i] < value) grey[i] = value;
      }
    }
    paint(xmin, ymin, xmax, ymax);
  }

  function paint(x0, y0, x1, y1) {
    if (x1 < x0 || y1 < y0) return;
    const w = x1 - x0 + 1, h = y1 - y0 + 1, img = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = grey[(y0 + y) * SIDE + x0 + x], o = 4 * (y * w + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, x0, y0);
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return [Math.floor((e.clientX - r.left) * SIDE / r.width), Math.floor((e.clientY - r.top) * SIDE / r.height)];
  }

  pad.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    st.down = true;
    st.prev = point(e);
    st.strokes += 1;
    drawSegment(st.prev[0], st.prev[1], st.prev[0], st.prev[1], RADIUS, 255);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!st.down) return;
    const p = point(e);
    drawSegment(st.prev[0], st.prev[1], p[0], p[1], RADIUS, 255);
    st.prev = p;
    const now = performance.now();
    if (now - st.last > PERIOD_MS) { st.last = now; ask(); }
  });
  const release = () => { if (st.down) { st.down = false; ask(); } };
  pad.addEventListener("pointerup", release);
  pad.addEventListener("pointercancel", release);

  $("clear").addEventListener("click", () => {
    grey.fill(0);
    paint(0, 0, SIDE - 1, SIDE - 1);
    st.strokes = 0;
    setStatus("save-status", "");
    ask();
  });
  $("mode").addEventListener("click", () => {
    st.mode = st.mode === "softmax" ? "raw" : "softmax";
    $("mode").textContent = st.mode === "softmax" ? "Softmax" : "Raw";
    if (st.answer) show(st.answer);
  });

  const canvasBlob = () => new Promise((resolve) => pad.toBlob(resolve, "image/png"));

  // one request at a time; strokes drawn meanwhile are sent as soon as it returns
  async function ask() {
    if (st.inFlight) { st.again = true; return; }
    st.inFlight = true;
    try {
      const r = await fetch("/api/try", { method: "POST", body: await canvasBlob(),
                                          headers: { "Content-Type": "image/png", "X-CSRF-Token": CSRF } });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || r.statusText);
      st.answer = body;
      $("model").textContent = body.model;
      show(body);
    } catch (err) {
      setStatus("board-status", String(err.message || err), "error");
    } finally {
      st.inFlight = false;
      if (st.again) { st.again = false; ask(); }
    }
  }

  function show(a) {
    $("answer").textContent = a.answer;
    $("answer").dataset.state = a.state;
    setStatus("board-status", a.status);
    const values = st.mode === "softmax" ? a.scores : a.raw;
    const bars = $("bars");
    bars.replaceChildren();
    values.forEach((v, i) => {
      const pct = a.bars_shown ? Math.floor(v * 100 + 0.5) : 0;   // the board's lv_bar value
      const label = document.createElement("span");
      label.textContent = String(i);
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill" + (a.state === "digit" && a.digit === i ? " winner" : "");
      fill.style.width = pct + "%";
      fill.style.display = "block";
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = pct + " %";
      const row = [label, track, value];
      row.forEach((el) => { el.dataset.digit = String(i); bars.appendChild(el); });
    });
    bars.dataset.winner = a.state === "digit" ? String(a.digit) : "";
    const pv = $("preview").getContext("2d"), img = pv.createImageData(28, 28);
    a.input28.forEach((row, y) => row.forEach((v, x) => {
      const o = 4 * (y * 28 + x);
      img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
      img.data[o + 3] = 255;
    }));
    pv.putImageData(img, 0, 0);
    $("right").disabled = a.state !== "digit";
    $("right").textContent = a.state === "digit" ? `Right (${a.digit})` : "Right";
  }

  // -- corrections ---------------------------------------------------------------------------------
  const writer = $("writer");
  writer.value = localStorage.getItem("mnistp4.writer") || writer.value;
  writer.addEventListener("change", () => localStorage.setItem("mnistp4.writer", writer.value.trim()));

  async function save(label) {
    if (!st.strokes) { setStatus("save-status", "draw the digit first", "error"); return; }
    const form = new FormData();
    form.append("image", await canvasBlob(), "canvas.png");
    form.append("label", String(label));
    form.append("writer", writer.value.trim());
    try {
      const r = await fetch("/api/try/digits", { method: "POST", body: form, headers: { "X-CSRF-Token": CSRF } });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || r.statusText);
      setStatus("save-status", `saved as ${body.digit.label} (${body.digit.source}); it is on the review page`, "ok");
    } catch (err) {
      setStatus("save-status", "not saved: " + String(err.message || err), "error");
    }
  }
  $("right").addEventListener("click", () => { if (st.answer && st.answer.state === "digit") save(st.answer.digit); });
  for (let d = 0; d <= 9; d++) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = String(d);
    b.id = "wrong-" + d;
    b.title = `save this drawing labelled ${d}`;
    b.addEventListener("click", () => save(d));
    $("labels").appendChild(b);
  }

  // -- update --------------------------------------------------------------------------------------
  function showUpdate(s) {
    const bar = $("update-progress");
    bar.classList.toggle("hidden", !s.running && !s.result && !s.error);
    bar.value = s.fraction || 0;
    $("update").disabled = s.running;
    const last = s.messages && s.messages.length ? s.messages[s.messages.length - 1] : "";
    if (s.error) setStatus("update-status", "update failed: " + s.error, "error");
    else if (s.running) setStatus("update-status", last);
    else if (s.result) {
      const r = s.result, pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(2) + " %");
      const text = `MNIST ${pct(r.before.mnist)} → ${pct(r.after.mnist)}, new digits ${pct(r.before.new)} → ` +
        `${pct(r.after.new)}, in ${r.seconds_to_verified_file.toFixed(0)} s. ` +
        (s.switched_to ? `Now trying ${s.switched_to}.` : "Not deployable: " + last);
      setStatus("update-status", text, s.switched_to ? "ok" : "error");
    }
  }

  async function poll() {
    const r = await fetch("/api/update");
    const s = await r.json();
    showUpdate(s);
    if (s.running) { st.polling = setTimeout(poll, 1000); return; }
    st.polling = null;
    if (s.switched_to) { $("model").textContent = s.switched_to; if (st.strokes) ask(); }
  }

  $("update").addEventListener("click", async () => {
    const r = await fetch("/api/update", { method: "POST", headers: { "X-CSRF-Token": CSRF } });
    const body = await r.json();
    if (!r.ok && r.status !== 409) { setStatus("update-status", body.error || r.statusText, "error"); return; }
    if (!st.polling) poll();
  });

  fetch("/api/try/model").then((r) => r.json()).then((m) => { $("model").textContent = m.model || "none"; });
  fetch("/api/update").then((r) => r.json()).then((s) => { showUpdate(s); if (s.running) poll(); });
})();
