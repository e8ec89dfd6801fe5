// Askgate: small progressive enhancements. No inline script anywhere (the CSP forbids it).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A page showing a freshly generated key must not be re-posted by a reload: a reload shows the page itself
  // (a rotation posts to its own address, which only answers POST).
  const shownKey = document.querySelector("[data-new-key]");
  if (shownKey && window.history.replaceState) {
    window.history.replaceState(null, "", shownKey.dataset.pageUrl || window.location.href);
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
        window.setTimeout(() => { button.textContent = "Copy"; }, 2500);
      } catch (err) {
        source.select();
        if (status) status.textContent = "Select the key and copy it with Ctrl+C (the browser blocked the clipboard).";
      }
    });
  });

  // The new key takes the focus, selected, so it can be copied at once and screen readers announce it.
  const newKey = document.querySelector("[data-new-key] input[readonly]");
  if (newKey) {
    newKey.addEventListener("focus", () => newKey.select());
    newKey.focus();
  }

  // The user menu (<details>) closes on Escape and on a click elsewhere, like any menu.
  const menu = document.querySelector("details.usermenu");
  if (menu) {
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  }

  // Ticking a workspace for a new key means "only these": select that choice too.
  document.querySelectorAll("[data-workspace-choices] input[type=checkbox]").forEach((box) => {
    box.addEventListener("change", () => {
      const chosen = box.form.querySelector('input[name="workspace_access"][value="chosen"]');
      if (box.checked && chosen) chosen.checked = true;
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});

// The Ask page posts to /api/ask with the session cookie and the page's CSRF token, and asks for the
// server-rendered HTML fragment (sources highlighted by Pygments). Errors come back as JSON.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ask-form");
  if (!form) return;
  const result = document.getElementById("ask-result");
  const status = form.querySelector(".ask-status");
  const button = form.querySelector("button[type=submit]");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = form.elements.question.value.trim();
    if (!question) {
      status.textContent = "Type a question first.";
      form.elements.question.focus();
      return;
    }
    button.disabled = true;
    status.textContent = "Searching the code…";
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "text/html", "X-CSRFToken": csrf },
        body: JSON.stringify({ workspaceId: form.elements.workspaceId.value, question }),
      });
      if (response.ok) {
        result.innerHTML = await response.text();
        status.textContent = "";
      } else {
        let message = `The server answered ${response.status}.`;
        try { message = (await response.json()).error || message; } catch (err) { /* not JSON */ }
        if (response.status === 400 && message.startsWith("CSRF")) message = "This page has expired. Reload it and ask again.";
        const retry = response.headers.get("Retry-After");
        if (response.status === 503 && retry) message += `. Ask again in ${retry} seconds (the dashboard shows its progress).`;
        status.textContent = message;
      }
    } catch (err) {
      status.textContent = "Could not reach the server. Check your connection and try again.";
    } finally {
      button.disabled = false;
    }
  });
});

// The dashboard's workspaces follow their index builds: while any is queued or indexing, the list asks
// /workspaces/states every second and updates its rows in place (text, progress bar, Index now button).
document.addEventListener("DOMContentLoaded", () => {
  const list = document.querySelector("[data-states-url]");
  if (!list) return;
  const announcer = document.getElementById("index-announcer");
  const rows = () => [...list.querySelectorAll(".ws-index[data-workspace]")];
  const busy = (state) => state === "queued" || state === "indexing";

  const show = (row, ws) => {
    const before = row.dataset.state;
    row.dataset.state = ws.state;
    row.querySelector(".ws-index-text").textContent = ws.text;
    const bar = row.querySelector(".ws-progress");
    bar.hidden = ws.state !== "indexing";
    if (ws.progress && ws.progress.total) {
      bar.max = ws.progress.total;
      bar.value = ws.progress.done;
    } else {
      bar.removeAttribute("value"); // an indeterminate bar while the files are being listed
    }
    const form = row.querySelector(".ws-index-form");
    form.hidden = !(ws.state === "failed" || ws.state === "not_indexed");
    form.querySelector("button").textContent = ws.state === "failed" ? "Retry" : "Index now";
    // Screen readers hear when a build ends, not every file of it.
    if (announcer && before !== ws.state && !busy(ws.state)) announcer.textContent = `Workspace ${ws.id}: ${ws.text}`;
  };

  const poll = async () => {
    try {
      const response = await fetch(list.dataset.statesUrl, {
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
      });
      if (response.redirected) return; // signed out meanwhile: the next page load says so
      if (!response.ok) throw new Error(`status ${response.status}`);
      const byId = new Map((await response.json()).workspaces.map((ws) => [ws.id, ws]));
      rows().forEach((row) => {
        const ws = byId.get(row.dataset.workspace);
        if (ws) show(row, ws);
      });
    } catch (err) {
      window.setTimeout(poll, 5000); // the server is restarting or the network is away: try again, slowly
      return;
    }
    schedule();
  };
  const schedule = () => {
    if (rows().some((row) => busy(row.dataset.state))) window.setTimeout(poll, 1000);
  };
  schedule();
});
