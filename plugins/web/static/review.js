// Review page: digits grouped by label, flagged ones highlighted, sorted by suspicion; click or
// keyboard (0-9 relabel, x reject, a accept, arrows move) records decisions through the API.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  // every state-changing request carries the page's CSRF token (the server refuses it otherwise)
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const state = { digits: [], order: [], selected: null, model: null, busy: false };

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);  // manifest text is data
  const inkFlagged = (d) => d.flags.some((f) => f !== "empty");  // a digit with a QA problem, not an empty box
  const disagrees = (d) => d.predicted !== null && d.label !== null && d.predicted !== d.label;

  function visible(d) {
    switch ($("filter").value) {
      case "ink": return !d.flags.includes("empty");
      case "flagged": return inkFlagged(d);
      case "undecided-flagged": return inkFlagged(d) && !d.decision;
      case "disagree": return disagrees(d);
      case "rejected": return d.decision === "rejected";
      default: return true;
    }
  }

  function compare(a, b) {
    if ($("sort").value === "suspicious" && b.suspicion !== a.suspicion) return b.suspicion - a.suspicion;
    return a.sheet.localeCompare(b.sheet) || a.row - b.row || a.col - b.col;
  }

  function caption(d) {
    const parts = [];
    if (d.flags.length) parts.push(`<span class="flag">${esc(d.flags.join(" "))}</span>`);
    if (disagrees(d)) parts.push(`<span class="disagree">model: ${d.predicted}</span>`);
    else if (d.confidence !== null) parts.push(`${Math.round(100 * d.confidence)}%`);
    if (d.decision) parts.push(esc(d.decision));
    return parts.join(" · ");
  }

  function render() {
    const groups = new Map();
    for (const d of state.digits.filter(visible).sort(compare)) {
      const key = d.label === null ? "?" : String(d.label);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(d);
    }
    const keys = [...groups.keys()].sort();
    const root = $("groups");
    root.replaceChildren();
    state.order = [];
    for (const key of keys) {
      const list = groups.get(key);
      const section = document.createElement("section");
      section.className = "group";
      section.dataset.label = key;
      const flagged = list.filter((d) => d.flags.length).length;
      section.innerHTML = `<h2>${key === "?" ? "no label" : "Label " + key} <span class="muted">` +
                          `(${list.length} digits${flagged ? ", " + flagged + " flagged" : ""})</span></h2>`;
      const tiles = document.createElement("div");
      tiles.className = "tiles";
      for (const d of list) {
        const fig = document.createElement("figure");
        fig.className = "tile";
        fig.classList.toggle("flagged", d.flags.length > 0 && d.decision !== "accepted");
        fig.classList.toggle("rejected", d.decision === "rejected");
        fig.classList.toggle("decided", !!d.decision && d.decision !== "rejected");
        fig.classList.toggle("selected", d.id === state.selected);
        fig.dataset.id = d.id;
        fig.dataset.label = key;
        fig.title = `${d.sheet} row ${d.row + 1} col ${d.col + 1}, source ${d.source}` +
                    (d.predicted !== null ? `; model: ${d.predicted} (${Math.round(100 * d.confidence)}%)` : "");
        fig.innerHTML = `<img alt="digit labelled ${esc(key)}" src="${esc(d.image)}"><figcaption>${caption(d)}</figcaption>`;
        fig.addEventListener("click", () => select(d.id));
        tiles.append(fig);
        state.order.push(d.id);
      }
      section.append(tiles);
      root.append(section);
    }
    const empty = state.digits.filter((d) => d.flags.includes("empty")).length;
    const flagged = state.digits.filter(inkFlagged).length;
    const rejected = state.digits.filter((d) => d.decision === "rejected").length;
    $("summary").textContent = `${state.digits.length - empty} digits (+${empty} empty boxes), ` +
                               `${flagged} flagged, ${rejected} rejected` +
                               (state.model ? ` · ranked by ${state.model.split(/[\\/]/).slice(-2).join("/")}` : " · no model: ranked by flags");
    if (!state.digits.length) root.innerHTML = '<p class="muted">No digits yet: run <code>mnistp4 segment</code> first.</p>';
    showActions();
  }

  function current() {
    return state.digits.find((d) => d.id === state.selected) || null;
  }

  function showActions() {
    const d = current();
    $("actions").classList.toggle("hidden", !d);
    if (!d) return;
    $("selected-info").textContent = `${d.sheet} r${d.row + 1} c${d.col + 1}: label ${d.label ?? "?"}` +
                                     (d.flags.length ? ` [${d.flags.join(", ")}]` : "");
    $("accept").disabled = !d.flags.length;
  }

  function select(id) {
    state.selected = id;
    document.querySelectorAll("figure.tile.selected").forEach((el) => el.classList.remove("selected"));
    const el = document.querySelector(`figure.tile[data-id="${CSS.escape(id)}"]`);
    if (el) {
      el.classList.add("selected");
      el.scrollIntoView({ block: "nearest" });
    }
    showActions();
  }

  function move(delta) {
    if (!state.order.length) return;
    const i = state.order.indexOf(state.selected);
    const j = i < 0 ? 0 : Math.min(state.order.length - 1, Math.max(0, i + delta));
    select(state.order[j]);
  }

  async function decide(body) {
    const d = current();
    if (!d || state.busy) return;
    state.busy = true;
    const next = state.order[state.order.indexOf(d.id) + 1] || null;
    try {
      // "seen": the digit as this page shows it (its image and flags: the version); if another
      // reviewer or a re-run of segment changed it since, the server records nothing (409) and sends
      // the digit as it is now
      const seen = { label: d.label, decision: d.decision, version: d.version };
      const r = await fetch(`/api/digits/${d.id}`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
        body: JSON.stringify({ ...body, seen }),
      });
      const out = await r.json().catch(() => ({}));
      if (r.status === 409 && out.digit) {
        Object.assign(d, out.digit);
        render();
        select(d.id);
      }
      if (!r.ok) throw new Error(out.error || `${r.status} ${r.statusText}`);
      Object.assign(d, out.digit);  // the server's view after the decision (label, decision, suspicion)
      setStatus(`${d.sheet} r${d.row + 1} c${d.col + 1}: ${d.decision}${d.label !== null ? ", label " + d.label : ""}`, "ok");
      document.body.dataset.decisions = String(Number(document.body.dataset.decisions || 0) + 1);
      state.selected = next;
      render();
      if (next) select(next);
    } catch (err) {
      setStatus(`Not saved: ${err.message}`, "error");
    } finally {
      state.busy = false;
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (/^[0-9]$/.test(e.key)) decide({ label: Number(e.key) });
    else if (e.key === "x" || e.key === "X") decide({ reject: true });
    else if (e.key === "a" || e.key === "A") { if (current() && current().flags.length) decide({ accept: true }); }
    else if (e.key === "ArrowRight" || e.key === "j") move(1);
    else if (e.key === "ArrowLeft" || e.key === "k") move(-1);
    else if (e.key === "Escape") { state.selected = null; render(); }
    else return;
    e.preventDefault();
  });

  const buttons = $("label-buttons");
  for (let k = 0; k <= 9; k++) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "label-btn";
    b.textContent = String(k);
    b.title = `label ${k}`;
    b.addEventListener("click", () => decide({ label: k }));
    buttons.append(b);
  }
  $("reject").addEventListener("click", () => decide({ reject: true }));
  $("accept").addEventListener("click", () => decide({ accept: true }));
  $("sort").addEventListener("change", render);
  $("filter").addEventListener("change", render);

  (async () => {
    try {
      const r = await fetch("/api/digits");
      const data = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
      state.digits = data.digits;
      state.model = data.model;
      render();
      if (data.model_error) setStatus(data.model_error, "error");
    } catch (err) {
      setStatus(`Cannot load the digits: ${err.message}`, "error");
    } finally {
      document.body.dataset.ready = "1";
    }
  })();
})();
