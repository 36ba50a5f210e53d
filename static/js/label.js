// The labelling page (annotation/label.html): keyboard shortcuts, the next pair prefetched,
// answers saved in the background. Plain JavaScript; htmx does the swapping.
//
// Every request goes through one queue, one at a time and in order. An answer is therefore
// saved before the next prefetch is asked for, and the server never hands back an item whose
// answer is still on its way. Listeners sit on `document`, so they survive the swaps of #pair;
// what belongs to a shown pair (its timer, its prefetch) starts again on htmx:afterSwap.
(() => {
  "use strict";

  const { closeSheets, toggleSheet, toast, openSkip, closeSkip } = window.labelPage;

  // Keys typed here are text, not shortcuts (Escape aside).
  const TYPING =
    "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=submit]):not([type=button]):not([type=hidden])";
  const NATIVE_ENTER = "button, a[href], summary, input[type=submit], input[type=button]";

  const LEASE_MARGIN_MS = 30_000;

  let shownAt = performance.now();
  let queue = Promise.resolve();
  let queued = 0;
  let saving = 0;

  const pair = () => document.getElementById("pair");
  const prefetchBox = () => document.getElementById("prefetch");
  const currentKey = () => pair()?.dataset.key || "";

  if (window.htmx) {
    // Defence in depth: nothing swapped into this page may run a script.
    htmx.config.allowScriptTags = false;
  }

  // ------------------------------------------------------------------ requests

  function counters() {
    document.documentElement.dataset.pending = String(queued);
    const state = document.querySelector("[data-save-state]");
    if (state) state.textContent = saving ? "Saving…" : "";
  }

  // Runs `job` once every job queued before it has finished.
  function enqueue(job, { save = false } = {}) {
    queued += 1;
    if (save) saving += 1;
    counters();
    queue = queue
      .then(job)
      .catch((error) => toast(`Something went wrong: ${error.message}`))
      .finally(() => {
        queued -= 1;
        if (save) saving -= 1;
        counters();
      });
    return queue;
  }

  // fetch as htmx would (the server answers with the #pair fragment); null when the network
  // fails. A redirect means the session ended: the login page takes over.
  async function request(url, options = {}) {
    let response;
    try {
      response = await fetch(url, {
        ...options,
        credentials: "same-origin",
        headers: { "HX-Request": "true" },
      });
    } catch {
      return null;
    }
    if (response.redirected) {
      window.location.assign(response.url);
      return null;
    }
    return { ok: response.ok, status: response.status, html: await response.text() };
  }

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function errorIn(html) {
    const error = parse(html).querySelector(".error");
    return error ? error.textContent.replace(/\s+/g, " ").trim() : "";
  }

  // ------------------------------------------------------------------ showing pairs

  function show(content) {
    const current = pair();
    if (!current) return;
    // htmx gives focus back to an element with the same id after a swap: a focused text box
    // of the old pair would take the keys away from the new one.
    if (current.contains(document.activeElement)) document.activeElement.blur();
    htmx.swap(current, content, { swapStyle: "outerHTML", swapDelay: 0, settleDelay: 0 });
  }

  function shown() {
    shownAt = performance.now();
    tick();
    prefetch();
  }

  function tick() {
    const timer = pair()?.querySelector("[data-timer]");
    if (!timer) return;
    const s = Math.floor((performance.now() - shownAt) / 1000);
    timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function clearPrefetch() {
    const box = prefetchBox();
    if (!box) return;
    box.innerHTML = "";
    delete box.dataset.for;
    delete box.dataset.key;
    delete box.dataset.expires;
  }

  // Fetch (and lease) the pair after the one on screen into the inert <template>.
  function prefetch() {
    clearPrefetch();
    const key = currentKey();
    const page = document.querySelector("[data-label-url]");
    if (!key || !page) return;
    const url = `${page.dataset.labelUrl}?prefetch=${encodeURIComponent(key)}`;
    enqueue(async () => {
      if (currentKey() !== key) return; // another pair is on screen: its own prefetch is queued
      const response = await request(url);
      if (!response?.ok || currentKey() !== key) return;
      const box = prefetchBox();
      box.innerHTML = response.html;
      const next = box.content.querySelector("#pair");
      if (!next?.dataset.key || next.dataset.key === key) {
        clearPrefetch(); // nothing more to label: the answer's own response will say so
        return;
      }
      box.dataset.for = key;
      box.dataset.key = next.dataset.key;
      box.dataset.expires = String(Date.now() + Number(next.dataset.leaseSeconds || 0) * 1000);
    });
  }

  function refreshProgress(html) {
    const fresh = parse(html).querySelector("[data-progress]");
    const here = pair()?.querySelector("[data-progress]");
    if (fresh && here) here.replaceWith(fresh);
  }

  // ------------------------------------------------------------------ answering

  function answer(event, form) {
    event.preventDefault();
    const current = pair();
    if (!current?.contains(form) || current.dataset.sent) return;
    if (form.matches(".skip-form") && !form.classList.contains("open")) {
      openSkip(form);
      return;
    }
    if (form.matches(".label-form")) {
      form.elements.time_spent_ms.value = String(Math.round(performance.now() - shownAt));
      if (!form.reportValidity()) return;
    }
    current.dataset.sent = "1";
    const body = new FormData(form);
    const box = prefetchBox();
    // A prefetched pair whose lease has (nearly) run out, after a long pause on this one,
    // may be someone else's by now: then the server picks the next pair instead.
    const fresh = Number(box?.dataset.expires) - Date.now() > LEASE_MARGIN_MS;
    if (box?.dataset.key && box.dataset.for === current.dataset.key && fresh) {
      // The next pair is here already: show it now and save the answer behind it. The
      // server's next pair is that same one (the oldest open lease), so only its counters
      // are taken from the response. The save is queued before the swap, which queues the
      // new pair's prefetch: the server must know this answer before it picks the pair
      // after the next, or it would hand this one back.
      const next = box.innerHTML;
      clearPrefetch();
      body.append("next", "progress"); // the server sends only the counters back
      enqueue(
        async () => {
          const response = await request(form.action, { method: "POST", body });
          if (response?.ok) refreshProgress(response.html);
          else sendBack(current, response);
        },
        { save: true },
      );
      show(next);
      return;
    }
    // Nothing prefetched (yet, or nothing left): wait for the server's next pair.
    enqueue(
      async () => {
        const response = await request(form.action, { method: "POST", body });
        if (response && (response.ok || response.status === 400)) {
          show(response.html); // the next pair, or this one again with the error
          return;
        }
        delete current.dataset.sent;
        toast(notSaved(response));
      },
      { save: true },
    );
  }

  function notSaved(response) {
    return response
      ? `Not saved: the server answered ${response.status}. Try again.`
      : "Not saved: the server cannot be reached. Try again.";
  }

  // An answer made on a pair that is no longer on screen failed: bring that pair back, with
  // the server's message (and the answer as sent) when there is one.
  function sendBack(old, response) {
    delete old.dataset.sent;
    if (response?.status === 400) {
      show(response.html);
      toast(`Your last answer was not saved: ${errorIn(response.html)}`);
      return;
    }
    const again = document.createDocumentFragment();
    again.append(old);
    show(again);
    toast(notSaved(response));
  }

  function undo(form) {
    enqueue(
      async () => {
        const response = await request(form.action, { method: "POST", body: new FormData(form) });
        if (response?.ok) {
          clearPrefetch();
          show(response.html); // the item answered last, open again; the others stay leased
          toast("Your last answer was taken back.");
          return;
        }
        toast(response ? errorIn(response.html) || notSaved(response) : notSaved(null));
      },
      { save: true },
    );
  }

  function submitPair() {
    pair()?.querySelector(".label-form")?.requestSubmit();
  }

  // ------------------------------------------------------------------ listeners

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches(".label-form, .skip-form")) {
      answer(event, form);
    } else if (form.matches(".undo-form")) {
      event.preventDefault();
      undo(form);
    }
  });

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest?.("[data-toggle]");
    if (toggle) toggleSheet(toggle.dataset.toggle);
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.id === "pair") shown();
  });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target instanceof Element ? event.target : null;
    const typing = Boolean(target && (target.isContentEditable || target.matches(TYPING)));

    if (event.key === "Escape") {
      const skip = target?.closest(".skip-form") || document.querySelector(".skip-form.open");
      if (skip) closeSkip(skip);
      if (typing) target.blur();
      else closeSheets();
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitPair();
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;

    // Caps Lock must not change what a key does; Shift does (Shift+U undoes even when u is a
    // strength level, as it is with 7 or more levels).
    const key = event.key.length === 1 && !event.shiftKey ? event.key.toLowerCase() : event.key;
    const form = pair()?.querySelector(".label-form");
    const option =
      key.length === 1 && form?.querySelector(`input[type=radio][data-key="${CSS.escape(key)}"]`);
    if (option) {
      event.preventDefault();
      option.checked = true;
      option.dispatchEvent(new Event("change", { bubbles: true }));
      return;
    }
    switch (key) {
      case "Enter":
        if (target?.closest(NATIVE_ENTER)) return; // the focused button does its own thing
        event.preventDefault();
        submitPair();
        break;
      case "s": {
        const skip = pair()?.querySelector(".skip-form");
        if (skip) {
          event.preventDefault();
          openSkip(skip);
        }
        break;
      }
      case "c": {
        const rationale = pair()?.querySelector("textarea[name=rationale]");
        if (rationale) {
          event.preventDefault(); // the c must not land in the box
          rationale.focus();
        }
        break;
      }
      case "u":
      case "U":
        event.preventDefault();
        document.querySelector(".undo-form")?.requestSubmit();
        break;
      case "i":
      case "I":
        event.preventDefault();
        toggleSheet("instructions");
        break;
      case "?":
        event.preventDefault();
        toggleSheet("shortcuts");
        break;
    }
  });

  document.documentElement.classList.add("js");
  counters();
  setInterval(tick, 1000);
  if (pair()) shown();
})();
