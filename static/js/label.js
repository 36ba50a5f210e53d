// The labelling page (annotation/label.html): keyboard shortcuts, the next pair prefetched,
// answers saved in the background (requests.js: one queue for every request, in order).
// Plain JavaScript; htmx does the swapping. Listeners sit on `document`, so they survive the
// swaps of #pair; what belongs to a shown pair (its timer, its prefetch) starts again on
// htmx:afterSwap.
(() => {
  "use strict";

  const { closeSheets, toggleSheet, toast, openSkip, closeSkip } = window.labelPage;
  const { enqueue, request, errorIn, notSaved, clearPrefetch, prefetch, send } =
    window.pageRequests;

  // Keys typed here are text, not shortcuts (Escape aside).
  const TYPING =
    "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=submit]):not([type=button]):not([type=hidden])";
  const NATIVE_ENTER = "button, a[href], summary, input[type=submit], input[type=button]";

  let shownAt = performance.now();

  const pair = () => document.getElementById("pair");

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
    window.pageMedia?.mount(pair());
    prefetch("pair");
  }

  function tick() {
    const timer = pair()?.querySelector("[data-timer]");
    if (!timer) return;
    const s = Math.floor((performance.now() - shownAt) / 1000);
    timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
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
      // Audio, when the project says so: both clips played to the end first (media.js).
      const blocked = window.pageMedia?.blocked(current);
      if (blocked) {
        toast(blocked);
        return;
      }
      form.elements.time_spent_ms.value = String(Math.round(performance.now() - shownAt));
      if (!form.reportValidity()) return;
    }
    send(form, current, show);
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
      if (option.matches(":disabled")) {
        toast(window.pageMedia?.blocked(pair()) || "This choice is not available yet.");
        return;
      }
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
  setInterval(tick, 1000);
  if (pair()) shown();
})();
