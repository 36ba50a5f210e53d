// Images and audio on the labelling pages (label.html, rank.html) and the review page
// (annotation/_media.html draws them). Loaded after page.js (and requests.js where the page
// has it) and the vendored wavesurfer.js, before label.js / rank.js.
//
// - Images of one [data-same-scale] group (a pair's A and B, a ranking's list) are drawn at
//   one scale: the largest that fits every one of them in its column and in the group's
//   share of the window height (data-same-scale, in vh), computed from natural sizes.
// - f (or a click) opens an image full size; z opens the group side by side in one
//   synchronised zoom: the wheel zooms around the pointer, dragging pans, every image moves
//   the same way, Esc closes.
// - Clips get a wavesurfer.js waveform (click to seek, playhead) over the native <audio>,
//   which stays the player (and the fallback without JavaScript). a/b play or pause A/B,
//   x switches between A and B at the same moment (p plays the selected clip on a ranking).
//   A clip played to its end is reported to the server (data-played-url); with
//   data-require-play the choice stays blocked until every clip has been played.
// - The next item's images are fetched as soon as it is prefetched (`preload`).
(() => {
  "use strict";

  const MAX_UPSCALE = 8; // small images are enlarged, but not without bound
  const TYPING =
    "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=submit]):not([type=button]):not([type=hidden])";

  const toast = (message) => window.labelPage?.toast(message);
  const item = () => document.getElementById("pair") || document.getElementById("ranking");
  const playHint = (root) =>
    root?.querySelector("[data-play-hint]")?.textContent.replace(/\s+/g, " ").trim() ||
    "Play every clip to the end first.";

  // ------------------------------------------------------------------ same-scale images

  function fit(group) {
    const images = [...group.querySelectorAll("img[data-media-image]")].filter(
      (img) => img.closest("[data-same-scale]") === group,
    );
    if (!images.length || images.some((img) => !img.complete || !img.naturalWidth)) return;
    const maxHeight = Math.max(160, (window.innerHeight * Number(group.dataset.sameScale)) / 100);
    let scale = MAX_UPSCALE;
    for (const img of images) {
      const width = img.parentElement.clientWidth;
      if (width) scale = Math.min(scale, width / img.naturalWidth);
      scale = Math.min(scale, maxHeight / img.naturalHeight);
    }
    for (const img of images) img.style.width = `${Math.floor(img.naturalWidth * scale)}px`;
    group.dataset.scale = scale.toFixed(4);
  }

  function fitAll(root = document) {
    for (const group of root.querySelectorAll("[data-same-scale]")) fit(group);
  }

  // ------------------------------------------------------------------ the full-size view

  let view = null; // { dialog, panes: [{pane, img}], shown, s, px, py, fitScale, sync }

  function viewerDialog() {
    let dialog = document.getElementById("media-viewer");
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.id = "media-viewer";
    dialog.className = "media-viewer";
    dialog.setAttribute("aria-label", "Full-size view");
    const bar = document.createElement("div");
    bar.className = "viewer-bar";
    const title = document.createElement("strong");
    title.dataset.viewerTitle = "";
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = "Wheel: zoom · drag: pan · +/−/0: zoom in, out, fit · Esc: close";
    const close = document.createElement("button");
    close.type = "button";
    close.className = "secondary";
    close.dataset.viewerClose = "";
    close.textContent = "Close (Esc)";
    bar.append(title, hint, close);
    const panes = document.createElement("div");
    panes.className = "viewer-panes";
    dialog.append(bar, panes);
    dialog.addEventListener("close", () => {
      panes.replaceChildren();
      view = null;
    });
    document.body.append(dialog);
    return dialog;
  }

  // `images`: the group's <img>s; `index`: the one to show alone, or null for all in sync.
  function openViewer(images, index) {
    if (!images.length) return;
    const dialog = viewerDialog();
    const box = dialog.querySelector(".viewer-panes");
    box.replaceChildren();
    const sync = index === null;
    const panes = (sync ? images : [images[index]]).map((original) => {
      const pane = document.createElement("div");
      pane.className = "viewer-pane";
      const img = new Image();
      img.alt = original.alt;
      img.draggable = false;
      img.addEventListener("load", () => reset());
      img.src = original.currentSrc || original.src;
      const label = document.createElement("span");
      label.className = "viewer-label";
      label.textContent = original.dataset.label || "";
      pane.append(img, label);
      box.append(pane);
      return { pane, img };
    });
    view = { dialog, panes, images, index, sync, s: 1, px: 0, py: 0, fitScale: 1 };
    dialog.classList.toggle("sync", sync);
    dialog.dataset.mode = sync ? "sync" : "single";
    if (!dialog.open) dialog.showModal();
    title();
    reset();
  }

  function title() {
    const el = view.dialog.querySelector("[data-viewer-title]");
    el.textContent = view.sync
      ? `${view.images.map((i) => i.dataset.label).join(" and ")}, zoomed together`
      : `${view.images[view.index].dataset.label}, full size`;
  }

  function closeViewer() {
    view?.dialog.close();
  }

  // Back to the largest common scale at which every shown image fits its pane.
  function reset() {
    if (!view) return;
    let scale = MAX_UPSCALE;
    for (const { pane, img } of view.panes) {
      if (!img.naturalWidth) return;
      scale = Math.min(
        scale,
        pane.clientWidth / img.naturalWidth,
        pane.clientHeight / img.naturalHeight,
      );
    }
    view.fitScale = scale;
    view.s = scale;
    view.px = 0;
    view.py = 0;
    layout();
  }

  // One transform for every pane: scale s, the image centred and then moved by (px, py).
  function layout() {
    if (!view) return;
    for (const { pane, img } of view.panes) {
      const w = img.naturalWidth * view.s;
      const h = img.naturalHeight * view.s;
      const x = (pane.clientWidth - w) / 2 + view.px;
      const y = (pane.clientHeight - h) / 2 + view.py;
      img.style.width = `${w}px`;
      img.style.height = `${h}px`;
      img.style.transform = `translate(${x}px, ${y}px)`;
    }
    view.dialog.dataset.scale = view.s.toFixed(4);
  }

  // Zoom by `factor` keeping the image point under (cx, cy) of `pane` where it is.
  function zoom(factor, pane, cx, cy) {
    if (!view) return;
    const shown = view.panes.find((p) => p.pane === pane) || view.panes[0];
    const { img } = shown;
    const pw = shown.pane.clientWidth;
    const ph = shown.pane.clientHeight;
    if (cx === undefined) [cx, cy] = [pw / 2, ph / 2];
    const s = Math.min(Math.max(view.s * factor, view.fitScale / 4), 64);
    const x = (pw - img.naturalWidth * view.s) / 2 + view.px;
    const y = (ph - img.naturalHeight * view.s) / 2 + view.py;
    const u = (cx - x) / view.s;
    const v = (cy - y) / view.s;
    view.px = cx - u * s - (pw - img.naturalWidth * s) / 2;
    view.py = cy - v * s - (ph - img.naturalHeight * s) / 2;
    view.s = s;
    layout();
  }

  // In the single view: show another image of the group, at the same zoom and place.
  function flip(step) {
    if (!view || view.sync) return;
    const next = (view.index + step + view.images.length) % view.images.length;
    const { s, px, py } = view;
    openViewer(view.images, next);
    const img = view.panes[0].img;
    const keep = () => {
      Object.assign(view, { s, px, py });
      layout();
    };
    if (img.complete && img.naturalWidth) keep();
    else img.addEventListener("load", keep, { once: true });
  }

  let drag = null;
  document.addEventListener(
    "wheel",
    (event) => {
      const pane = event.target.closest?.(".viewer-pane");
      if (!pane || !view) return;
      event.preventDefault();
      const box = pane.getBoundingClientRect();
      zoom(Math.exp(-event.deltaY * 0.0015), pane, event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );
  document.addEventListener("pointerdown", (event) => {
    const pane = event.target.closest?.(".viewer-pane");
    if (!pane || !view || event.button !== 0) return;
    event.preventDefault();
    drag = { x: event.clientX, y: event.clientY, pane };
    pane.setPointerCapture(event.pointerId);
  });
  document.addEventListener("pointermove", (event) => {
    if (!drag || !view) return;
    view.px += event.clientX - drag.x;
    view.py += event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
    layout();
  });
  document.addEventListener("pointerup", () => {
    drag = null;
  });
  window.addEventListener("resize", () => {
    fitAll();
    if (view) layout();
  });

  function groupImages(img) {
    const group = img.closest("[data-same-scale]");
    return group
      ? [...group.querySelectorAll("img[data-media-image]")].filter(
          (i) => i.closest("[data-same-scale]") === group,
        )
      : [img];
  }

  // The images f and z act on: the pair's A and B, or the ranking's list (f: the selected).
  function pageImages() {
    const group = item()?.querySelector(".candidates[data-same-scale], .rank-list[data-same-scale]");
    if (!group) return { images: [], start: 0 };
    const images = [...group.querySelectorAll("img[data-media-image]")];
    const selected = group.querySelector(".rank-item.selected img[data-media-image]");
    return { images, start: Math.max(0, images.indexOf(selected)) };
  }

  // ------------------------------------------------------------------ audio

  const players = new Map(); // .media-audio element -> { audio, wave }

  function mountAudio(el) {
    if (players.has(el)) return;
    const audio = el.querySelector("audio");
    if (!audio) return;
    let wave = null;
    const container = el.querySelector("[data-waveform]");
    if (window.WaveSurfer && container) {
      try {
        wave = window.WaveSurfer.create({
          container,
          media: audio, // the <audio> stays the player; wavesurfer draws and seeks it
          height: 56,
          waveColor: "#9aa5b1",
          progressColor: "#2563eb",
          cursorColor: "#111827",
          cursorWidth: 2,
          normalize: true,
          dragToSeek: true,
        });
        el.classList.add("has-waveform");
      } catch (error) {
        wave = null;
        console.warn("waveform unavailable", error); // the native controls remain
      }
    }
    players.set(el, { audio, wave });
    const button = el.querySelector("[data-play]");
    const time = el.querySelector("[data-time]");
    const update = () => {
      el.classList.toggle("playing", !audio.paused);
      if (button) button.firstChild.textContent = `${audio.paused ? "Play" : "Pause"} ${el.dataset.label} `;
      if (time) time.textContent = `${clock(audio.currentTime)} / ${clock(audio.duration)}`;
    };
    audio.addEventListener("play", () => {
      // One clip at a time: A/B listening compares, it never mixes.
      for (const [other, { audio: a }] of players) if (other !== el && !a.paused) a.pause();
      el.dataset.active = "1";
      for (const other of players.keys()) if (other !== el) delete other.dataset.active;
      update();
    });
    audio.addEventListener("pause", update);
    audio.addEventListener("timeupdate", update);
    audio.addEventListener("loadedmetadata", update);
    audio.addEventListener("ended", () => {
      update();
      played(el);
    });
    update();
  }

  function clock(seconds) {
    if (!Number.isFinite(seconds)) return "0:00";
    const s = Math.floor(seconds);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function toggle(el) {
    const player = el && players.get(el);
    if (!player) return;
    if (player.audio.paused) {
      if (player.audio.ended) player.audio.currentTime = 0;
      player.audio.play().catch((error) => toast(`The clip cannot play: ${error.message}`));
    } else {
      player.audio.pause();
    }
  }

  // A/B switching: pause the clip that plays (or played last), and play the other one from
  // the same moment.
  function switchAB(root) {
    const clips = [...root.querySelectorAll("[data-media-audio][data-play-key]")];
    if (clips.length < 2) return;
    const current = clips.find((c) => c.dataset.active) || null;
    if (!current) return toggle(clips[0]);
    const other = clips[(clips.indexOf(current) + 1) % clips.length];
    const from = players.get(current)?.audio;
    const to = players.get(other)?.audio;
    if (!from || !to) return;
    const at = from.ended ? 0 : from.currentTime;
    from.pause();
    to.currentTime = Number.isFinite(to.duration) ? Math.min(at, to.duration) : at;
    root.dataset.switches = String(Number(root.dataset.switches || 0) + 1);
    to.play().catch((error) => toast(`The clip cannot play: ${error.message}`));
  }

  // A clip played to its end: mark it, tell the server (in the page's request queue, so that
  // the play is recorded before an answer sent after it), unblock the choice when all are.
  function played(el) {
    const root = el.closest("#pair, #ranking");
    if (!root || !el.dataset.playedValue || el.classList.contains("played")) return;
    el.classList.add("played");
    const mark = el.querySelector("[data-played-mark]");
    if (mark) mark.textContent = "Played to the end";
    gate(root);
    const url = root.dataset.playedUrl;
    const requests = window.pageRequests;
    if (!url || !requests) return;
    const body = new FormData();
    body.append(root.dataset.playedField || "side", el.dataset.playedValue);
    const token = root.querySelector("[name=csrfmiddlewaretoken]")?.value;
    if (token) body.append("csrfmiddlewaretoken", token);
    requests.enqueue(async () => {
      const response = await requests.request(url, { method: "POST", body });
      if (response?.ok) return;
      el.classList.remove("played");
      if (mark) mark.textContent = "Not played to the end yet";
      gate(root);
      toast("That play was not recorded: play the clip again.");
    });
  }

  // With data-require-play: the choice is blocked (and the hint shown) until every clip of
  // the item was played to its end. The server checks it again at submit.
  function gate(root) {
    if (!root?.dataset.requirePlay) return;
    const clips = [...root.querySelectorAll("[data-media-audio][data-played-value]")];
    const blocked = clips.some((c) => !c.classList.contains("played"));
    if (blocked) root.dataset.playBlocked = "1";
    else delete root.dataset.playBlocked;
    const choices = root.querySelector("fieldset.choices");
    if (choices) choices.disabled = blocked;
    const hint = root.querySelector("[data-play-hint]");
    if (hint) hint.hidden = !blocked;
  }

  // ------------------------------------------------------------------ mounting

  function mount(root = document) {
    // Players of items no longer on the page go (their <audio> left with them).
    for (const [el, { audio, wave }] of players) {
      if (el.isConnected) continue;
      audio.pause();
      wave?.destroy();
      players.delete(el);
    }
    for (const el of root.querySelectorAll("[data-media-audio]")) mountAudio(el);
    for (const img of root.querySelectorAll("img[data-media-image]")) {
      const group = img.closest("[data-same-scale]");
      if (!img.complete && group) img.addEventListener("load", () => fit(group), { once: true });
    }
    fitAll();
    const current = root.matches?.("#pair, #ranking") ? root : item();
    gate(current);
  }

  function blocked(root) {
    return root?.dataset.playBlocked ? playHint(root) : "";
  }

  // The next item's images, fetched before it is shown (its HTML sits in an inert template,
  // where nothing loads by itself).
  function preload(content) {
    for (const img of content.querySelectorAll("img[data-media-image]")) {
      const early = new Image();
      early.decoding = "async";
      early.src = img.getAttribute("src");
    }
  }

  // ------------------------------------------------------------------ listeners

  document.addEventListener("click", (event) => {
    if (event.target.closest?.("[data-viewer-close]")) return closeViewer();
    const button = event.target.closest?.("[data-play]");
    if (button) return toggle(button.closest("[data-media-audio]"));
    const img = event.target.closest?.("img[data-media-image]");
    if (img && !img.closest(".media-viewer")) {
      const images = groupImages(img);
      openViewer(images, images.indexOf(img));
    }
  });

  // The review page swaps one comparison at a time; label.js and rank.js call mount().
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.matches?.("[id^=comparison-]")) mount(event.target);
  });

  // Capturing on window: runs before the page scripts' own listeners, which ignore a key
  // whose default was prevented here.
  window.addEventListener(
    "keydown",
    (event) => {
      if (event.defaultPrevented || event.isComposing) return;
      if (view) {
        viewerKey(event);
        return;
      }
      const root = item();
      const target = event.target instanceof Element ? event.target : null;
      if (!root || (target && (target.isContentEditable || target.matches(TYPING)))) return;
      if (event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) return;
      const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
      const pairPage = root.id === "pair";
      let handled = true;
      if (key === "f" || key === "z") {
        const { images, start } = pageImages();
        if (images.length) openViewer(images, key === "f" ? start : null);
        else handled = false;
      } else if (pairPage && (key === "a" || key === "b")) {
        const clip = root.querySelector(`[data-media-audio][data-play-key="${key}"]`);
        if (clip) toggle(clip);
        else handled = false;
      } else if (pairPage && key === "x") {
        switchAB(root);
      } else if (!pairPage && key === "p") {
        const clip = root.querySelector(".rank-item.selected [data-media-audio]");
        if (clip) toggle(clip);
        else toast("Select a response first (its number).");
      } else {
        handled = false;
      }
      if (handled) event.preventDefault();
    },
    true,
  );

  function viewerKey(event) {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const keys = {
      Escape: closeViewer,
      f: () => (view.sync ? openViewer(view.images, 0) : closeViewer()),
      z: () => (view.sync ? closeViewer() : openViewer(view.images, null)),
      a: () => view.index !== 0 && flip(-view.index),
      b: () => view.index !== 1 && flip(1 - view.index),
      ArrowLeft: () => flip(-1),
      ArrowRight: () => flip(1),
      "+": () => zoom(1.25),
      "=": () => zoom(1.25),
      "-": () => zoom(0.8),
      0: reset,
    };
    // Keys do nothing behind the view: an answer is given with the image in sight.
    if (event.key !== "Tab") event.preventDefault();
    event.stopPropagation();
    keys[key]?.();
  }

  window.pageMedia = { mount, blocked, preload, fitAll };
  mount(document);
})();
