// genreshift's page: choose a song, pick a genre or a reference, convert, follow the job,
// then listen, compare and download. Plain JS over the JSON API (/openapi.json).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 600;

  const form = $("convert-form");
  const drop = $("drop");
  const fileInput = $("file");
  const referenceInput = $("reference");
  const genreSelect = $("genre");
  const modeGenre = $("mode-genre");
  const modeReference = $("mode-reference");
  const strength = $("strength");
  const convertButton = $("convert");
  const bar = $("bar");
  const statusText = $("status-text");

  let info = null; // GET /api/info
  let song = null; // the chosen File
  let busy = false;

  // ------------------------------------------------------------------ helpers

  function show(el, on) { el.hidden = !on; }

  function showError(message) {
    $("error").textContent = message;
    show($("error"), Boolean(message));
  }

  function mb(bytes) { return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`; }

  function seconds(s) {
    s = Math.round(s);
    if (s < 90) return `${s} s`;
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    return [h && `${h} h`, m && `${m} min`, rest && `${rest} s`].filter(Boolean).join(" ");
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON */ }
    return `the server answered ${response.status} ${response.statusText}`;
  }

  function setProgress(value, text) {
    if (value === null) bar.removeAttribute("value"); // indeterminate
    else bar.value = Math.max(0, Math.min(1, value));
    statusText.textContent = text;
  }

  function updateButton() {
    const target = modeGenre.checked ? genreSelect.value : referenceInput.files.length > 0;
    convertButton.disabled = busy || !song || !target;
  }

  // ------------------------------------------------------------------ server facts

  async function loadInfo() {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(await errorOf(response));
    info = await response.json();
    genreSelect.replaceChildren();
    for (const genre of info.genres) {
      const option = document.createElement("option");
      option.value = genre;
      option.textContent = genre;
      genreSelect.append(option);
    }
    const none = info.genres.length === 0;
    show($("no-genres"), none);
    genreSelect.disabled = none;
    modeGenre.disabled = none;
    if (none) modeReference.checked = true;
    const l = info.limits;
    $("limits").textContent = `${info.accepted}; up to ${mb(l.max_upload_bytes)} and ` +
      `${seconds(l.max_seconds)}.`;
    updateButton();
  }

  // ------------------------------------------------------------------ choosing files

  function tooBig(file) {
    if (info && file.size > info.limits.max_upload_bytes) {
      return `${file.name} is ${mb(file.size)}; the largest accepted is ` +
        `${mb(info.limits.max_upload_bytes)}: choose a shorter or compressed file`;
    }
    return "";
  }

  function setSong(file) {
    showError(tooBig(file));
    song = tooBig(file) ? null : file;
    $("file-name").textContent = song ? `${file.name} (${mb(file.size)})` : "No song chosen";
    updateButton();
  }

  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });
  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) setSong(fileInput.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) setSong(files[0]);
  });

  referenceInput.addEventListener("change", () => {
    if (referenceInput.files.length) {
      modeReference.checked = true;
      const problem = tooBig(referenceInput.files[0]);
      showError(problem);
      if (problem) referenceInput.value = "";
    }
    updateButton();
  });
  genreSelect.addEventListener("change", () => { modeGenre.checked = true; updateButton(); });
  modeGenre.addEventListener("change", updateButton);
  modeReference.addEventListener("change", updateButton);
  strength.addEventListener("input", () => {
    $("strength-value").textContent = Number(strength.value).toFixed(2);
  });

  // ------------------------------------------------------------------ converting

  function upload(data) {
    // XMLHttpRequest, not fetch: only it reports upload progress.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/jobs");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          setProgress(e.loaded / e.total, `Uploading… ${Math.round(100 * e.loaded / e.total)} %`);
        }
      });
      xhr.addEventListener("load", () => {
        const body = xhr.response;
        if (xhr.status === 202 && body) resolve(body);
        else reject(new Error((body && body.error) || `the server answered ${xhr.status}`));
      });
      xhr.addEventListener("error", () => reject(new Error(
        "the upload failed: the server could not be reached, or it closed the connection " +
        "(a file over the size limit is refused)")));
      xhr.send(data);
    });
  }

  function describeRunning(job) {
    if (job.state === "queued") {
      const ahead = job.queue_position || 0;
      setProgress(null, ahead ? `Waiting for a worker: ${ahead} job${ahead > 1 ? "s" : ""} ` +
        "ahead of yours" : "Waiting for a worker…");
      return;
    }
    const elapsed = job.elapsed_s || 0;
    let text = `${job.stage[0].toUpperCase()}${job.stage.slice(1)}… ${seconds(elapsed)}`;
    if (job.estimate_s) {
      const left = Math.max(0, job.estimate_s - elapsed);
      text += left > 0 ? ` (about ${seconds(left)} left, from this server's measured speed)`
        : " (taking longer than earlier conversions)";
      setProgress(Math.min(0.97, elapsed / job.estimate_s), text);
    } else {
      setProgress(null, text);
    }
  }

  async function follow(job) {
    for (;;) {
      if (job.state === "done") return job;
      if (job.state === "failed") throw new Error(job.error || "the conversion failed");
      describeRunning(job);
      await new Promise((r) => setTimeout(r, POLL_MS));
      const response = await fetch(job.links.status);
      if (!response.ok) throw new Error(await errorOf(response));
      job = await response.json();
    }
  }

  function summarize(job) {
    const r = job.result;
    const parts = [];
    if (r.mode === "trained") {
      const to = r.targets.map((t) => r.targets.length > 1 ?
        `${t.genre} ${(t.weight * 100).toFixed(0)} %` : t.genre).join(" + ");
      let from = r.source_genre || "unknown genre";
      if (r.source_given) from += " (as given)";
      else if (r.source_status === "uncertain") {
        from = `uncertain genre (best guess ${r.source_guess}, ` +
          `p = ${r.source_confidence.toFixed(2)})`;
      } else if (r.source_confidence !== null && r.source_confidence !== undefined) {
        from += ` (detected, p = ${r.source_confidence.toFixed(2)})`;
      }
      parts.push(`${job.input.name}: ${from} → ${to}`);
    } else {
      parts.push(`${job.input.name} → like ${job.settings.reference}`);
    }
    parts.push(`strength ${r.strength.toFixed(2)}`);
    if (r.rhythm && r.rhythm.asked !== "keep") {
      parts.push(r.rhythm.rhythm === "keep" ? `rhythm kept (${r.rhythm.reason})` :
        `rhythm ${r.rhythm.rhythm}` + (r.rhythm.groove ?
          ` (${r.rhythm.groove} groove at ${r.rhythm.tempo_bpm} BPM)` : ""));
    }
    const total = Object.values(r.timings_s).reduce((a, b) => a + b, 0);
    parts.push(`${seconds(r.duration_s)} of audio converted in ${total.toFixed(1)} s`);
    return parts.join("; ") + "." + (r.notes.length ? ` Note: ${r.notes.join("; ")}.` : "");
  }

  function showResult(job) {
    $("summary").textContent = summarize(job);
    $("original").src = job.links.original;
    $("converted").src = job.links.downloads.wav;
    for (const fmt of ["wav", "flac", "mp3"]) $(`dl-${fmt}`).href = job.links.downloads[fmt];
    $("spectrogram").src = job.links.spectrogram;
    if (job.expires_in_s !== null) {
      $("expiry").textContent = `(available for ${seconds(job.expires_in_s)})`;
    }
    show($("result"), true);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (convertButton.disabled) return;
    const data = new FormData();
    data.append("file", song, song.name);
    if (modeGenre.checked) {
      data.append("genre", genreSelect.value);
      data.append("rhythm", $("rhythm").value);
    }
    else data.append("reference", referenceInput.files[0], referenceInput.files[0].name);
    data.append("strength", strength.value);

    busy = true;
    updateButton();
    showError("");
    show($("result"), false);
    show($("progress"), true);
    setProgress(0, "Uploading…");
    try {
      const job = await follow(await upload(data));
      show($("progress"), false);
      showResult(job);
    } catch (err) {
      show($("progress"), false);
      showError(err.message);
    } finally {
      busy = false;
      updateButton();
    }
  });

  loadInfo().catch((err) => showError(`Could not load the server's settings: ${err.message}`));
})();
