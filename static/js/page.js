// What the pair page (label.js) and the ranking page (rank.js) share: the instruction and
// shortcut sheets, the toast, and the skip form's reason box. Loaded before either.
(() => {
  "use strict";

  let toastTimer = 0;

  function closeSheets() {
    for (const sheet of document.querySelectorAll("dialog[open]")) sheet.close();
  }

  function toggleSheet(id) {
    const sheet = document.getElementById(id);
    if (!sheet) return;
    if (sheet.open) {
      sheet.close();
    } else {
      closeSheets();
      sheet.show(); // not modal: the page stays usable and focus is never held
    }
  }

  function toast(message) {
    const el = document.getElementById("toast");
    if (!el || !message) return;
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      el.hidden = true;
    }, 6000);
  }

  function openSkip(form) {
    form.classList.add("open");
    form.elements.reason.focus();
  }

  function closeSkip(form) {
    form.classList.remove("open");
    if (form.contains(document.activeElement)) document.activeElement.blur();
  }

  window.labelPage = { closeSheets, toggleSheet, toast, openSkip, closeSkip };
})();
