// The labelling page in ranking mode (annotation/rank.html): order the responses from the
// keyboard or by dragging, then post the order as JSON tie groups of candidate ids, best
// first. As on the pair page, the next ranking is prefetched and shown at once while the
// answer is saved behind it (requests.js). Plain JavaScript. Listeners sit on `document`, so
// they survive the swaps of #ranking; what belongs to a shown item (its timer, its order, its
// prefetch) starts again in shown().
//
// The list is the order. An item with class "tied" ties with the one above it; with the
// project's top_k, the items after the first groups that cover k responses are "unranked"
// and are left out of the posted order.
(() => {
  "use strict";

  const { closeSheets, toggleSheet, toast, openSkip, closeSkip } = window.labelPage;
  const { parse, prefetch, send } = window.pageRequests;

  const TYPING = "textarea, select, input:not([type=hidden]):not([type=submit]):not([type=button])";

  let shownAt = performance.now();
  let dragged = null;

  const section = () => document.getElementById("ranking");
  const items = () => [...(section()?.querySelectorAll(".rank-item") || [])];
  const selected = () => section()?.querySelector(".rank-item.selected") || null;

  // ------------------------------------------------------------------ the order

  // Badges, the unranked tail and the hidden field, from the list as it stands.
  function render() {
    const list = items();
    if (list[0]) list[0].classList.remove("tied");
    const topK = Number(section()?.dataset.topK || 0);
    let rank = 0;
    let covered = 0;
    let cut = false;
    const posted = [];
    for (const [i, item] of list.entries()) {
      const tied = item.classList.contains("tied");
      if (!tied) {
        // A new place: with top_k, stop once the places so far cover k responses.
        if (topK && covered >= topK) cut = true;
        rank = i + 1;
        if (!cut) posted.push([]);
      }
      item.classList.toggle("unranked", cut);
      const badge = item.querySelector("[data-rank]");
      if (badge) badge.textContent = cut ? "–" : `#${rank}${tied ? " =" : ""}`;
      item.setAttribute("aria-label", cut ? `Response ${item.dataset.number}, not ranked`
        : `Response ${item.dataset.number}, rank ${rank}${tied ? " (tie)" : ""}`);
      if (!cut) {
        posted[posted.length - 1].push(Number(item.dataset.id));
        covered += 1;
      }
    }
    const field = section()?.querySelector(".rank-form input[name=order]");
    if (field) field.value = JSON.stringify(posted);
  }

  function select(item) {
    for (const other of items()) other.classList.toggle("selected", other === item);
    item?.scrollIntoView({ block: "nearest" });
  }

  function move(item, step) {
    if (!item) return toast("Select a response first (its number).");
    if (step < 0 && item.previousElementSibling) {
      item.previousElementSibling.before(item);
    } else if (step > 0 && item.nextElementSibling) {
      item.nextElementSibling.after(item);
    } else {
      return;
    }
    item.classList.remove("tied"); // a moved response takes a place of its own
    render();
    item.scrollIntoView({ block: "nearest" });
  }

  function tie(item) {
    if (!item) return toast("Select a response first (its number).");
    if (!section()?.dataset.allowTies) return toast("This project does not allow ties.");
    if (!item.previousElementSibling) return toast("The first response has nothing above it.");
    item.classList.toggle("tied");
    render();
  }

  // ------------------------------------------------------------------ showing items

  // `content`: the server's HTML for an item, or a fragment holding an item's element.
  function show(content) {
    const from = typeof content === "string" ? parse(content) : content;
    const fresh = from.getElementById("ranking");
    const current = section();
    if (!fresh || !current) return;
    if (current.contains(document.activeElement)) document.activeElement.blur();
    current.replaceWith(fresh);
    shown();
  }

  function shown() {
    shownAt = performance.now();
    render();
    window.pageMedia?.mount(section());
    prefetch("ranking");
  }

  // An answer (or a skip) of the item on screen, saved in the background when the next item
  // is prefetched (requests.js).
  function answer(form) {
    const current = section();
    if (!current?.contains(form) || current.dataset.sent) return;
    send(form, current, show);
  }

  function submit() {
    const form = section()?.querySelector(".rank-form");
    if (!form) return;
    // Audio, when the project says so: every clip played to the end first (media.js).
    const blocked = window.pageMedia?.blocked(section());
    if (blocked) return toast(blocked);
    render();
    form.elements.time_spent_ms.value = String(Math.round(performance.now() - shownAt));
    answer(form);
  }

  // ------------------------------------------------------------------ listeners

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!section()?.contains(form)) return;
    if (form.matches(".rank-form")) {
      event.preventDefault();
      submit();
    } else if (form.matches(".skip-form")) {
      event.preventDefault();
      if (form.classList.contains("open")) answer(form);
      else openSkip(form);
    }
  });

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest?.("[data-toggle]");
    if (toggle) return toggleSheet(toggle.dataset.toggle);
    const item = event.target.closest?.(".rank-item");
    if (item && !event.target.closest("a, audio, button")) select(item);
  });

  // Drag and drop: the dragged response goes above or below the one under the pointer.
  document.addEventListener("dragstart", (event) => {
    const item = event.target.closest?.(".rank-item");
    if (!item) return;
    dragged = item;
    item.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", item.dataset.id);
  });
  document.addEventListener("dragover", (event) => {
    const over = event.target.closest?.(".rank-item");
    if (!dragged || !over) return;
    event.preventDefault();
    if (over === dragged) return;
    const box = over.getBoundingClientRect();
    if (event.clientY < box.top + box.height / 2) over.before(dragged);
    else over.after(dragged);
  });
  document.addEventListener("dragend", () => {
    if (!dragged) return;
    dragged.classList.remove("dragging", "tied");
    select(dragged);
    dragged = null;
    render();
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
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (/^[1-9]$/.test(key)) {
      const item = items().find((i) => i.dataset.number === key);
      if (item) {
        event.preventDefault();
        select(item);
      }
      return;
    }
    switch (key) {
      case "ArrowUp":
      case "k":
        event.preventDefault();
        move(selected(), -1);
        break;
      case "ArrowDown":
      case "j":
        event.preventDefault();
        move(selected(), 1);
        break;
      case "t":
        event.preventDefault();
        tie(selected());
        break;
      case "Enter":
        if (target?.closest("button, a[href], summary")) return;
        event.preventDefault();
        submit();
        break;
      case "s": {
        const skip = section()?.querySelector(".skip-form");
        if (skip) {
          event.preventDefault();
          openSkip(skip);
        }
        break;
      }
      case "i":
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
  if (section()) shown();
})();
