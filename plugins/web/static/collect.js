// Collection page: draw digits into the boxes of a sheet template, then submit one PNG.
// Strokes are kept per box in template pixels, so undo/clear work per box and the submitted
// image is the untouched template plus black ink at the pen width the server chose.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const sheet = $("sheet"), boxView = $("box");
  // every state-changing request carries the page's CSRF token (the server refuses it otherwise)
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const WRITER_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/;
  const BOX_VIEW_PX = 512;       // intrinsic size of the enlarged single-box canvas
  const state = { layout: null, img: null, strokes: [], current: 0, mode: "grid", drawing: null, busy: false, frame: 0,
                  penSeen: false };

  async function getJSON(url) {
    const r = await fetch(url);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${url}: ${r.status} ${r.statusText}`);
    return body;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  // ---- geometry ----------------------------------------------------------------------------
  const boxes = () => state.layout.boxes;
  const pen = () => state.layout.pen_width;

  function inner(b) {  // ink is clipped to the box interior, clear of its printed lines
    const m = state.layout.ink_margin;
    return { x: b.x + m, y: b.y + m, w: b.w - 2 * m, h: b.h - 2 * m };
  }

  function drawGuide(ctx, i, lineWidth) {  // on screen only: where ink can go
    const c = inner(boxes()[i]);
    ctx.save();
    ctx.strokeStyle = "rgba(120,140,160,.6)";
    ctx.lineWidth = lineWidth;
    ctx.setLineDash([4 * lineWidth, 3 * lineWidth]);
    ctx.strokeRect(c.x, c.y, c.w, c.h);
    ctx.restore();
  }

  function boxAt(p) {
    return boxes().findIndex((b) => p[0] >= b.x && p[0] < b.x + b.w && p[1] >= b.y && p[1] < b.y + b.h);
  }

  function boxViewRect(b) {  // the enlarged view shows the box with a small margin around it
    const side = Math.max(b.w, b.h) * 1.12;
    return { x: b.x + b.w / 2 - side / 2, y: b.y + b.h / 2 - side / 2, side };
  }

  function sheetPoint(e) {
    const r = sheet.getBoundingClientRect();
    return [(e.clientX - r.left) * sheet.width / r.width, (e.clientY - r.top) * sheet.height / r.height];
  }

  function boxViewPoint(e) {
    const r = boxView.getBoundingClientRect(), v = boxViewRect(boxes()[state.current]);
    return [v.x + (e.clientX - r.left) * v.side / r.width, v.y + (e.clientY - r.top) * v.side / r.height];
  }

  // ---- drawing -------------------------------------------------------------------------------
  function drawInk(ctx, i) {
    const c = inner(boxes()[i]);
    ctx.save();
    ctx.beginPath();
    ctx.rect(c.x, c.y, c.w, c.h);
    ctx.clip();
    ctx.strokeStyle = ctx.fillStyle = "#000";
    ctx.lineWidth = pen();
    ctx.lineCap = ctx.lineJoin = "round";
    for (const s of state.strokes[i]) {
      ctx.beginPath();
      if (s.length === 1) {
        ctx.arc(s[0][0], s[0][1], pen() / 2, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.moveTo(s[0][0], s[0][1]);
      for (let k = 1; k < s.length; k++) ctx.lineTo(s[k][0], s[k][1]);
      ctx.stroke();
    }
    ctx.restore();
  }

  function composeSheet(ctx) {  // exactly what is submitted: template + ink, nothing else
    ctx.drawImage(state.img, 0, 0);
    boxes().forEach((_, i) => drawInk(ctx, i));
  }

  function renderSheet() {
    const ctx = sheet.getContext("2d");
    composeSheet(ctx);
    const b = boxes()[state.current];
    ctx.save();
    ctx.strokeStyle = "rgba(31,111,235,.85)";
    ctx.lineWidth = Math.max(3, sheet.width / 300);
    ctx.strokeRect(b.x - 2, b.y - 2, b.w + 4, b.h + 4);
    ctx.restore();
    drawGuide(ctx, state.current, 1);
  }

  function renderBoxView() {
    const ctx = boxView.getContext("2d"), i = state.current, v = boxViewRect(boxes()[i]);
    const s = BOX_VIEW_PX / v.side;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, BOX_VIEW_PX, BOX_VIEW_PX);
    ctx.setTransform(s, 0, 0, s, -v.x * s, -v.y * s);
    ctx.drawImage(state.img, 0, 0);
    drawGuide(ctx, i, 1 / s);
    drawInk(ctx, i);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  function render() {
    state.frame = 0;
    if (!state.layout) return;
    if (state.mode === "grid") renderSheet(); else renderBoxView();
    updatePrompt();
  }

  function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(render);
  }

  function written() {
    return state.strokes.filter((s) => s.length > 0).length;
  }

  function updatePrompt() {
    const b = boxes()[state.current], n = boxes().length;
    const where = `row ${b.row + 1}, box ${b.col + 1}`;
    $("prompt").innerHTML = state.mode === "box"
      ? `Write <b>${b.digit}</b> <span class="muted">(${where}; ${state.current + 1} of ${n})</span>`
      : `Write the row's digit in every box. Selected: <b>${b.digit}</b> <span class="muted">(${where})</span>`;
    $("progress").textContent = `${written()} of ${n} boxes written`;
    document.body.dataset.written = String(written());
  }

  // ---- input ---------------------------------------------------------------------------------
  function attach(canvas, toSheet, pickBox) {
    canvas.addEventListener("pointerdown", (e) => {
      if (state.drawing || state.busy || (e.pointerType === "mouse" && e.button !== 0)) return;
      if (e.pointerType === "pen") state.penSeen = true;
      if (e.pointerType === "touch" && state.penSeen) return;  // palm rejection once a stylus is in use
      const p = toSheet(e), i = pickBox(p);
      if (i < 0) return;
      e.preventDefault();
      canvas.setPointerCapture(e.pointerId);
      const stroke = [p];
      state.strokes[i].push(stroke);
      state.current = i;
      state.drawing = { id: e.pointerId, stroke };
      schedule();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!state.drawing || e.pointerId !== state.drawing.id) return;
      e.preventDefault();
      const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
      const s = state.drawing.stroke;
      for (const ev of events) {
        const p = toSheet(ev), last = s[s.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= 0.5) s.push(p);
      }
      schedule();
    });
    const end = (e) => {
      if (state.drawing && e.pointerId === state.drawing.id) {
        state.drawing = null;
        schedule();
      }
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  attach(sheet, sheetPoint, boxAt);
  attach(boxView, boxViewPoint, () => state.current);

  // ---- buttons -------------------------------------------------------------------------------
  function setMode(mode) {
    state.mode = mode;
    sheet.classList.toggle("hidden", mode !== "grid");
    boxView.classList.toggle("hidden", mode !== "box");
    document.querySelectorAll(".box-only").forEach((el) => el.classList.toggle("hidden", mode !== "box"));
    $("mode").textContent = mode === "grid" ? "One box at a time" : "Whole sheet";
    document.body.dataset.mode = mode;
    schedule();
  }

  function step(delta) {
    const n = boxes().length;
    state.current = (state.current + delta + n) % n;
    schedule();
  }

  $("mode").addEventListener("click", () => setMode(state.mode === "grid" ? "box" : "grid"));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("undo").addEventListener("click", () => { state.strokes[state.current].pop(); schedule(); });
  $("clear").addEventListener("click", () => { state.strokes[state.current] = []; schedule(); });
  $("clear-all").addEventListener("click", () => {
    if (written() && !confirm("Erase every box of this sheet?")) return;
    state.strokes = boxes().map(() => []);
    schedule();
  });
  $("layout").addEventListener("change", (e) => {
    if (written() && !confirm("Switching the layout erases this sheet. Continue?")) {
      e.target.value = state.layout.name;
      return;
    }
    loadLayout(e.target.value).catch((err) => setStatus(err.message, "error"));
  });
  $("writer").value = localStorage.getItem("mnistp4.writer") || "";
  $("writer").addEventListener("change", (e) => localStorage.setItem("mnistp4.writer", e.target.value.trim()));
  $("submit").addEventListener("click", () => submit());
  $("send-photo").addEventListener("click", () => sendPhoto());
  document.addEventListener("keydown", (e) => {  // keyboard users: Ctrl/Cmd+Z undo, arrows move in box view
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT" || !state.layout) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") $("undo").click();
    else if (state.mode === "box" && e.key === "ArrowRight") step(1);
    else if (state.mode === "box" && e.key === "ArrowLeft") step(-1);
    else return;
    e.preventDefault();
  });
  window.addEventListener("beforeunload", (e) => { if (written() && !state.busy) e.preventDefault(); });

  function writerId() {  // the writer id, or null after saying what it must be
    const writer = $("writer").value.trim();
    if (WRITER_RE.test(writer)) return writer;
    setStatus("Enter a writer id first: 1-32 letters, digits or '-'.", "error");
    $("writer").focus();
    return null;
  }

  async function postForm(url, form) {  // the server's JSON answer, or an Error with its message
    const r = await fetch(url, { method: "POST", body: form, headers: { "X-CSRF-Token": CSRF } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
    return body;
  }

  async function submit() {
    const writer = writerId();
    if (!writer) return;
    if (!written()) {
      setStatus("Nothing is written yet: draw the digits in the boxes, then submit.", "error");
      return;
    }
    const c = document.createElement("canvas");
    c.width = state.layout.width;
    c.height = state.layout.height;
    composeSheet(c.getContext("2d"));
    const blob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("layout", state.layout.name);
    form.append("writer", writer);
    form.append("image", blob, "sheet.png");
    state.busy = true;
    $("submit").disabled = true;
    setStatus("Saving…");
    try {
      const body = await postForm("/api/sheets", form);
      state.strokes = boxes().map(() => []);
      state.current = 0;
      state.penSeen = false;  // the next writer may use a finger
      document.body.dataset.lastSheet = body.id;
      setStatus(`Saved as ${body.image} (${body.boxes_written} boxes). Thank you! ` +
                "The sheet is blank again for the next writer.", "ok");
    } catch (err) {
      setStatus(`Not saved: ${err.message}`, "error");
    } finally {
      state.busy = false;
      $("submit").disabled = false;
      schedule();
    }
  }

  // A photo of a paper sheet goes to the server as it is; the answer says how many of the sheet's
  // corner squares it shows, so the writer can take it again while the sheet is still at hand.
  async function sendPhoto() {
    const writer = writerId();
    const file = $("photo").files[0];
    if (!writer) return;
    if (!file) {
      setStatus("Choose or take a photo of the sheet first.", "error");
      return;
    }
    const form = new FormData();
    form.append("writer", writer);
    form.append("image", file, file.name);
    $("send-photo").disabled = true;
    setStatus("Sending the photo…");
    try {
      const body = await postForm("/api/photos", form);
      document.body.dataset.lastPhoto = body.id;
      $("photo").value = "";
      if (body.warning) setStatus(`Saved as ${body.image}, but ${body.warning}.`, "error");
      else setStatus(`Saved as ${body.image}: all 4 corner squares of a ${body.layout} sheet are visible. Thank you!`, "ok");
    } catch (err) {
      setStatus(`Photo not saved: ${err.message}`, "error");
    } finally {
      $("send-photo").disabled = false;
    }
  }

  // ---- start ---------------------------------------------------------------------------------
  async function loadLayout(name) {
    const layout = await getJSON(`/api/layouts/${encodeURIComponent(name)}`);
    const img = new Image();
    img.src = layout.template;
    await img.decode();
    state.layout = layout;
    state.img = img;
    state.strokes = layout.boxes.map(() => []);
    state.current = 0;
    sheet.width = layout.width;
    sheet.height = layout.height;
    boxView.width = boxView.height = BOX_VIEW_PX;
    document.body.dataset.layout = layout.name;
    render();
    document.body.dataset.ready = "1";
  }

  (async () => {
    try {
      const data = await getJSON("/api/layouts");
      const select = $("layout");
      for (const name of data.layouts) select.add(new Option(name, name));
      const start = new URLSearchParams(location.search).get("layout") || data.default;
      select.value = data.layouts.includes(start) ? start : data.default;
      setMode("grid");
      await loadLayout(select.value);
    } catch (err) {
      setStatus(`Cannot load the sheet layout: ${err.message}`, "error");
    }
  })();
})();
