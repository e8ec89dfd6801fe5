// Askgate: small progressive enhancements. No inline script anywhere (the CSP forbids it).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A page showing a freshly generated key must not be re-posted by a reload.
  if (document.querySelector("[data-new-key]") && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.href);
  }

  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      const status = button.closest("section")?.querySelector(".copy-status");
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.value);
        button.textContent = "Copied";
        if (status) status.textContent = "Copied to the clipboard.";
      } catch (err) {
        source.select();
        if (status) status.textContent = "Select the key and copy it with Ctrl+C (the browser blocked the clipboard).";
      }
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
