// How the pair page (label.js) and the ranking page (rank.js) talk to the server: one request
// queue, fetch as htmx would, the next item prefetched into <template id="prefetch"> and the
// answer saved behind it. Loaded after page.js and before either page's script; the item on
// screen is the element with id `id` ("pair" or "ranking"), and its data-key names its lease.
//
// Every request goes through one queue, one at a time and in order. An answer is therefore
// saved before the next prefetch is asked for, and the server never hands back an item whose
// answer is still on its way.
(() => {
  "use strict";

  const { toast } = window.labelPage;

  // A prefetched item whose lease has (nearly) run out, after a long pause on the one before
  // it, may be someone else's by now: then the server picks the next item instead.
  const LEASE_MARGIN_MS = 30_000;

  let queue = Promise.resolve();
  let queued = 0;
  let saving = 0;

  if (window.htmx) {
    // Defence in depth: nothing swapped into these pages may run a script.
    htmx.config.allowScriptTags = false;
  }

  const prefetchBox = () => document.getElementById("prefetch");
  const keyOf = (id) => document.getElementById(id)?.dataset.key || "";

  // ------------------------------------------------------------------ the queue

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

  // fetch as htmx would (the server answers with the item's fragment); null when the network
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
    template.innerHTML = html; // inert: scripts in it never run
    return template.content;
  }

  function errorIn(html) {
    const error = parse(html).querySelector(".error");
    return error ? error.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function notSaved(response) {
    return response
      ? `Not saved: the server answered ${response.status}. Try again.`
      : "Not saved: the server cannot be reached. Try again.";
  }

  // ------------------------------------------------------------------ prefetching

  function clearPrefetch() {
    const box = prefetchBox();
    if (!box) return;
    box.innerHTML = "";
    delete box.dataset.for;
    delete box.dataset.key;
    delete box.dataset.expires;
  }

  // Fetch (and lease) the item after the one on screen into the inert <template>.
  function prefetch(id) {
    clearPrefetch();
    const key = keyOf(id);
    const page = document.querySelector("[data-label-url]");
    if (!key || !page) return;
    const url = `${page.dataset.labelUrl}?prefetch=${encodeURIComponent(key)}`;
    enqueue(async () => {
      if (keyOf(id) !== key) return; // another item is on screen: its own prefetch is queued
      const response = await request(url);
      if (!response?.ok || keyOf(id) !== key) return;
      const box = prefetchBox();
      box.innerHTML = response.html;
      const next = box.content.getElementById(id);
      if (!next?.dataset.key || next.dataset.key === key) {
        clearPrefetch(); // nothing more to do: the answer's own response will say so
        return;
      }
      window.pageMedia?.preload(box.content); // its images load while this item is answered
      box.dataset.for = key;
      box.dataset.key = next.dataset.key;
      box.dataset.expires = String(Date.now() + Number(next.dataset.leaseSeconds || 0) * 1000);
    });
  }

  // The prefetched item's HTML when it follows `key` and its lease has time left (the box is
  // emptied); null otherwise.
  function takePrefetched(key) {
    const box = prefetchBox();
    const fresh = Number(box?.dataset.expires) - Date.now() > LEASE_MARGIN_MS;
    if (!box?.dataset.key || box.dataset.for !== key || !fresh) return null;
    const html = box.innerHTML;
    clearPrefetch();
    return html;
  }

  // ------------------------------------------------------------------ answering

  // Post `form`, an answer to (or a skip of) `item`, the item on screen; `show(content)` puts
  // an item's HTML (or a fragment holding its element) on screen.
  function send(form, item, show) {
    item.dataset.sent = "1";
    const body = new FormData(form);
    const next = takePrefetched(item.dataset.key);
    if (next !== null) {
      // The next item is here already: show it now and save the answer behind it. The
      // server's next item is that same one (the oldest open lease), so only its counters
      // are taken from the response. The save is queued before the swap, which queues the
      // new item's prefetch: the server must know this answer before it picks the item
      // after the next, or it would hand this one back.
      body.append("next", "progress"); // the server sends only the counters back
      enqueue(
        async () => {
          const response = await request(form.action, { method: "POST", body });
          if (response?.ok) refreshProgress(response.html);
          else sendBack(item, response, show);
        },
        { save: true },
      );
      show(next);
      return;
    }
    // Nothing prefetched (yet, or nothing left): wait for the server's next item.
    enqueue(
      async () => {
        const response = await request(form.action, { method: "POST", body });
        if (response && (response.ok || response.status === 400)) {
          show(response.html); // the next item, or this one again with the error
          return;
        }
        delete item.dataset.sent;
        toast(notSaved(response));
      },
      { save: true },
    );
  }

  function refreshProgress(html) {
    const fresh = parse(html).querySelector("[data-progress]");
    const here = document.querySelector("[data-progress]"); // the prefetch box's is inert
    if (fresh && here) here.replaceWith(fresh);
  }

  // An answer made on an item that is no longer on screen failed: bring that item back, with
  // the server's message (and the answer as sent) when there is one.
  function sendBack(old, response, show) {
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

  counters();

  window.pageRequests = {
    enqueue,
    request,
    parse,
    errorIn,
    notSaved,
    clearPrefetch,
    prefetch,
    send,
  };
})();
