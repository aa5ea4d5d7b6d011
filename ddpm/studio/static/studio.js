// The studio page: tabs, piano rolls (SVG) with bar numbers and bar selection, jobs with progress.
"use strict";

const state = { info: null, sources: {}, busy: false };
const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

// ----- messages and progress -----

function showError(text) {
  const box = $("#message");
  box.textContent = text;
  box.className = "error";
  box.hidden = false;
}

function clearMessage() {
  $("#message").hidden = true;
  $("#message").textContent = "";
}

function setProgress(fraction, stage) {
  $("#progress-box").hidden = fraction === null;
  if (fraction !== null) {
    $("#progress").value = fraction;
    $("#progress-stage").textContent = stage;
  }
}

function setBusy(busy) {
  state.busy = busy;
  document.querySelectorAll("form button[type=submit]").forEach((b) => (b.disabled = busy));
}

async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    throw new Error(`the studio server did not answer (${e.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.body = body; // e.g. an upload's tracks, so that the page can offer another
    throw error;
  }
  return body;
}

function postJSON(url, payload) {
  return api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function runJob(url, payload) {
  setBusy(true);
  clearMessage();
  setProgress(0, "sending the request");
  try {
    const { job } = await postJSON(url, payload);
    for (;;) {
      const status = await api(`/api/jobs/${job}`);
      setProgress(status.progress, `${status.stage} (${status.seconds} s)`);
      if (status.state === "done") return status.result;
      if (status.state === "error") throw new Error(status.error);
      await sleep(250);
    }
  } finally {
    setBusy(false);
    setProgress(null);
  }
}

// ----- piano rolls -----

function pianoRoll(melody, { newBars = null, selectable = false } = {}) {
  const barSteps = state.info ? state.info.steps_per_bar : 16;
  const steps = melody.steps;
  const bars = Math.ceil(steps / barSteps);
  const pitches = melody.notes.map((n) => n[0]);
  const low = Math.min(...pitches, 60) - 2;
  const high = Math.max(Math.max(...pitches, 60) + 2, low + 14);
  const rows = high - low + 1;
  const box = document.createElement("div");
  box.className = "roll-box";
  const numbers = document.createElement("div");
  numbers.className = "bar-numbers";
  for (let bar = 1; bar <= bars; bar++) {
    const label = document.createElement("span");
    label.textContent = bar;
    numbers.appendChild(label);
  }
  // One unit per 16th step across, one per semitone down; stretched to the box (no text inside).
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${steps} ${rows}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.classList.add("roll");
  svg.dataset.bars = bars;
  const add = (tag, attrs) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.appendChild(el);
    return el;
  };
  add("rect", { x: 0, y: 0, width: steps, height: rows, class: "roll-bg" });
  if (newBars) {
    const [a, b] = newBars;
    add("rect", { x: (a - 1) * barSteps, y: 0, width: (b - a + 1) * barSteps, height: rows, class: "new-bars" });
  }
  const selection = add("rect", { x: 0, y: 0, width: 0, height: rows, class: "selection" });
  for (let bar = 1; bar < bars; bar++) {
    const x = bar * barSteps;
    add("line", { x1: x, x2: x, y1: 0, y2: rows, class: bar % 2 ? "bar-line" : "frame-line" });
  }
  for (const [pitch, start, end] of melody.notes) {
    add("rect", { x: start, y: high - pitch, width: Math.max(end - start - 0.15, 0.3), height: 0.9, class: "note" });
  }
  box.append(numbers, svg);
  box.showSelection = (first, last) => {
    selection.setAttribute("x", (first - 1) * barSteps);
    selection.setAttribute("width", Math.max(0, last - first + 1) * barSteps);
  };
  if (selectable) makeSelectable(box, svg, bars);
  return box;
}

function makeSelectable(box, svg, bars) {
  let anchor = null;
  const barAt = (event) => {
    const box = svg.getBoundingClientRect();
    const fraction = (event.clientX - box.left) / box.width;
    return Math.min(bars, Math.max(1, Math.floor(fraction * bars) + 1));
  };
  const update = (event) => {
    const bar = barAt(event);
    setBars(Math.min(anchor, bar), Math.max(anchor, bar));
  };
  box.addEventListener("pointerdown", (event) => {
    anchor = barAt(event);
    box.setPointerCapture(event.pointerId);
    update(event);
  });
  box.addEventListener("pointermove", (event) => anchor !== null && update(event));
  box.addEventListener("pointerup", () => (anchor = null));
  box.classList.add("selectable");
}

function setBars(first, last) {
  const form = $("#infill-form");
  form.first_bar.value = first;
  form.last_bar.value = last;
  showSnap();
}

function showSnap() {
  const form = $("#infill-form");
  const first = Number(form.first_bar.value), last = Number(form.last_bar.value);
  const roll = $("#infill-source .roll-box");
  if (!first || !last || first > last) {
    $("#infill-snap").textContent = "";
    return;
  }
  const a = 2 * Math.floor((first - 1) / 2) + 1, b = 2 * Math.ceil(last / 2);
  $("#infill-snap").textContent =
    a === first && b === last ? `regenerates bars ${a}–${b}` : `snaps to whole 2-bar frames: regenerates bars ${a}–${b}`;
  if (roll) roll.showSelection(a, b);
}

function melodyCard(melody, options = {}) {
  const card = document.createElement("figure");
  card.className = "melody";
  const caption = document.createElement("figcaption");
  caption.textContent = melody.title + (melody.note ? ` — ${melody.note}` : "");
  card.appendChild(caption);
  card.appendChild(pianoRoll(melody, options));
  const controls = document.createElement("div");
  controls.className = "controls";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  audio.src = melody.audio;
  const link = document.createElement("a");
  link.href = melody.midi;
  link.className = "download";
  link.setAttribute("download", "");
  link.textContent = "Download MIDI";
  controls.append(audio, link);
  card.appendChild(controls);
  return card;
}

// ----- forms -----

function formValues(form) {
  const v = (name) => form.elements[name];
  const steps = v("steps").value;
  const values = { seed: Number(v("seed").value), temperature: Number(v("temperature").value), steps: steps ? Number(steps) : null };
  if (v("sampler")) values.sampler = v("sampler").value;
  return values;
}

function setUpSampling(info) {
  document.querySelectorAll("form .sampling").forEach((span) => {
    span.appendChild($("#sampling-template").content.cloneNode(true));
    const select = span.querySelector("select[name=sampler]");
    const steps = span.querySelector("input[name=steps]");
    steps.max = info.num_timesteps;
    span.querySelector("input[name=temperature]").value = info.temperature;
    if (span.closest("#interpolate-form")) {
      select.closest("label").remove();
      steps.value = Math.min(50, info.num_timesteps);
      steps.closest("label").firstChild.textContent = "DDIM steps ";
      return;
    }
    for (const name of Object.keys(info.samplers)) select.add(new Option(name, name, false, name === info.default_sampler));
    const sync = () => {
      const s = info.samplers[select.value] || {};
      steps.disabled = s.steps === null || s.steps === undefined;
      steps.value = steps.disabled ? "" : s.steps;
      steps.title = steps.disabled ? "this sampler runs every diffusion step" : "";
    };
    select.addEventListener("change", sync);
    sync();
  });
}

function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (state.busy) return;
    try {
      await handler();
    } catch (e) {
      showError(e.message);
    }
  });
}

function renderList(container, melodies, options) {
  container.replaceChildren(...melodies.map((m) => melodyCard(m, options(m))));
}

function setUpForms() {
  onSubmit($("#generate-form"), async () => {
    const form = $("#generate-form");
    const result = await runJob("/api/generate", { ...formValues(form), n: Number(form.n.value) });
    renderList($("#generate-results"), result.melodies, () => ({}));
  });
  onSubmit($("#infill-form"), async () => {
    const form = $("#infill-form");
    if (!state.sources.infill) throw new Error("pick a melody first: upload a MIDI file or choose an eval tune");
    const payload = { ...formValues(form), source: state.sources.infill.id, k: Number(form.k.value),
      first_bar: Number(form.first_bar.value), last_bar: Number(form.last_bar.value) };
    const result = await runJob("/api/infill", payload);
    renderList($("#infill-results"), result.melodies, (m) => ({ newBars: m.new_bars }));
  });
  onSubmit($("#interpolate-form"), async () => {
    const form = $("#interpolate-form");
    if (!state.sources.a || !state.sources.b) throw new Error("pick both melodies, A and B, first");
    const modes = ["latent", "noise"].filter((m) => form.elements[m].checked);
    if (!modes.length) throw new Error("tick at least one way: in latent space or through the diffusion noise");
    const payload = { ...formValues(form), a: state.sources.a.id, b: state.sources.b.id, n: Number(form.n.value), modes };
    const result = await runJob("/api/interpolate", payload);
    const container = $("#interpolate-results");
    container.replaceChildren();
    for (const row of result.rows) {
      const heading = document.createElement("h3");
      heading.textContent = row.mode === "latent" ? "In latent space" : "Through the diffusion noise (DDIM)";
      const list = document.createElement("div");
      list.className = "row";
      renderList(list, row.melodies, () => ({}));
      container.append(heading, list);
    }
  });
  const form = $("#infill-form");
  form.first_bar.addEventListener("input", showSnap);
  form.last_bar.addEventListener("input", showSnap);
}

// ----- sources: uploads and eval tunes -----

function showSource(slot, melody) {
  state.sources[slot] = melody;
  const container = $(`#${slot}-source`);
  container.replaceChildren(melodyCard(melody, { selectable: slot === "infill" }));
  if (slot === "infill") {
    const form = $("#infill-form");
    form.first_bar.max = form.last_bar.max = melody.bars;
    showSnap();
  }
}

function setUpPickers(tunes, message) {
  document.querySelectorAll(".picker").forEach((picker) => {
    const slot = picker.dataset.slot;
    const upload = $(".upload", picker), select = $(".eval", picker);
    const tracks = $(".track", picker), trackLabel = tracks.closest("label");
    let file = null; // the upload the track menu belongs to, sent again when another of its tracks is picked
    if (message) select.options[0].textContent = "none available";
    select.title = message || "";
    for (const t of tunes) select.add(new Option(`${t.index}: ${t.title}`, t.index));

    function showTracks(list) {
      tracks.replaceChildren(
        ...list.map((t) => new Option(`${t.index}: ${t.name} (${t.notes} notes)`, t.index, t.chosen, t.chosen))
      );
      trackLabel.hidden = list.length < 2; // a choice only where the file offers one
    }

    async function send(candidate, track) {
      clearMessage();
      const data = new FormData();
      data.append("file", candidate);
      if (track !== undefined) data.append("track", track);
      try {
        const melody = await api("/api/melodies", { method: "POST", body: data });
        file = candidate;
        showSource(slot, melody);
        select.value = "";
        showTracks(melody.tracks);
      } catch (e) {
        showError(e.message);
        if (e.body && e.body.tracks) {
          file = candidate; // a track of it failed (too long, no notes): offer the others
          showTracks(e.body.tracks);
        } else if (candidate !== file) {
          trackLabel.hidden = true; // an unreadable new file: the menu of the old one no longer applies
        }
      }
    }

    upload.addEventListener("change", async () => {
      if (!upload.files[0]) return;
      await send(upload.files[0]);
      upload.value = "";
    });
    tracks.addEventListener("change", () => send(file, tracks.value));
    select.addEventListener("change", async () => {
      if (select.value === "") return;
      clearMessage();
      try {
        showSource(slot, await api(`/api/melodies/eval/${select.value}`, { method: "POST" }));
        trackLabel.hidden = true;
      } catch (e) {
        showError(e.message);
      }
    });
  });
}

// ----- tabs and start-up -----

function setUpTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
      }
    });
  }
}

async function start() {
  setUpTabs();
  try {
    const info = await api("/api/info");
    state.info = info;
    $("#model-info").textContent = `${info.checkpoint}: ${info.bars} bars at ${info.qpm} qpm, ${info.num_timesteps} diffusion steps`;
    setUpSampling(info);
    setUpForms();
    const evalTunes = await api("/api/eval");
    setUpPickers(evalTunes.tunes, evalTunes.message);
    document.body.dataset.ready = "true";
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
