// critic review: keyboard shortcuts, the note rule, and the lease countdown with heartbeat.
// Undo (Z) is a plain form: the server takes the decision back.
// The pages work without this file (plain forms); it never inserts markup, only text: the
// precedents panel is built from JSON with elements and text nodes, never parsed as HTML.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const form = document.getElementById("decision");
  const errorBox = document.getElementById("form-error");
  let sent = false;

  function visible(el) {
    return !el.disabled && !el.closest("[hidden]");
  }

  function keyName(e) {
    // Shift with a digit names the digit, whatever the keyboard layout puts on it.
    if (e.shiftKey && /^Digit[0-9]$/.test(e.code || "")) return "shift+" + e.code.slice(5);
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key.toLowerCase();
    return (e.ctrlKey || e.metaKey ? "ctrl+" : "") + key;
  }

  function findKey(name) {
    for (const el of document.querySelectorAll("[data-key]")) {
      if (el.dataset.key === name && visible(el)) return el;
    }
    return null;
  }

  function showError(message) {
    let box = errorBox || document.getElementById("js-error");
    if (!box) {
      box = document.createElement("p");
      box.id = "js-error";
      box.className = "error";
      box.setAttribute("role", "alert");
      form.prepend(box);
    }
    box.textContent = message;
  }

  // -- the note rule: overriding a confident draft needs a reason --------------------------
  function overrides(submitter) {
    const draft = form.dataset.draftLabel || "";
    const pick = (form.elements.namedItem("pick") || {}).value;
    if (submitter.name === "label") return submitter.value !== draft;
    const action = submitter.name === "action" ? submitter.value : "";
    if (action === "reject") return true;
    if (action === "accept") return Boolean(pick) && pick !== draft;
    if (action === "edit") {
      const label = form.elements.namedItem("edit_label");
      const revision = form.elements.namedItem("revision");
      return (label && label.value !== draft) ||
        (revision && revision.value !== revision.defaultValue);
    }
    return false;
  }

  function noteMissing(submitter) {
    const confidence = parseFloat(form.dataset.confidence || "");
    const high = parseFloat(form.dataset.high || "1");
    const note = form.elements.namedItem("note");
    if (isNaN(confidence) || confidence < high || !note || note.value.trim()) return false;
    return overrides(submitter);
  }

  // -- sending a decision ------------------------------------------------------------------
  if (form) {
    form.addEventListener("submit", (e) => {
      const submitter = e.submitter;
      if (sent) {
        e.preventDefault(); // a second press while the first is on its way
        return;
      }
      if (submitter && !submitter.hasAttribute("data-now") &&
          form.dataset.confidence !== undefined && noteMissing(submitter)) {
        e.preventDefault();
        showError("The critic was confident here: write in the note why you override it, then press the key again.");
        const note = form.elements.namedItem("note");
        if (note) note.focus();
        return;
      }
      sent = true;
    });
  }

  // A second Z while the first undo is on its way must not take back one more decision (the
  // server also refuses: the form names the decision it means).
  document.querySelectorAll("form.undo-bar").forEach((undoForm) => {
    let undoing = false;
    undoForm.addEventListener("submit", (e) => {
      if (undoing) e.preventDefault();
      undoing = true;
    });
  });

  // -- keys --------------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.isComposing) return;
    const name = keyName(e);
    const typing = e.target.closest && e.target.closest("input, textarea, select");
    if (typing) {
      if (name === "escape") e.target.blur();
      if (name === "ctrl+enter") {
        const el = findKey("ctrl+enter");
        if (el) {
          e.preventDefault();
          el.click();
        }
      }
      return;
    }
    if ((e.ctrlKey || e.metaKey) && name !== "ctrl+enter") return;
    const focusTarget = document.querySelector('[data-focus-key="' + CSS.escape(name) + '"]');
    if (focusTarget) {
      e.preventDefault();
      focusTarget.focus();
      return;
    }
    const el = findKey(name);
    if (!el) return;
    e.preventDefault();
    el.click();
  });

  // -- the item list: J and K move between items (Enter opens one), X ticks it -------------
  const rows = Array.from(document.querySelectorAll("tr.item-row"));
  if (rows.length) {
    document.addEventListener("keydown", (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey || e.isComposing) return;
      if (e.target.closest && e.target.closest("input, textarea, select")) return;
      const key = e.key.toLowerCase();
      if (key !== "j" && key !== "k" && key !== "x") return;
      e.preventDefault();
      const at = rows.findIndex((row) => row.contains(document.activeElement));
      if (key === "x") {
        const box = at < 0 ? null : rows[at].querySelector("input[type=checkbox]");
        if (box) box.checked = !box.checked;
        return;
      }
      const next = key === "j" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
      rows.forEach((row) => row.classList.remove("current"));
      rows[next].classList.add("current");
      rows[next].querySelector("a.item-link").focus();
    });
  }

  document.querySelectorAll("[data-open]").forEach((button) => {
    button.addEventListener("click", () => {
      const panel = document.getElementById(button.dataset.open);
      if (!panel) return;
      panel.hidden = !panel.hidden;
      if (!panel.hidden) {
        const field = panel.querySelector("select, textarea, input");
        if (field) field.focus();
      }
    });
  });

  // -- precedents: the review page shows the item at once, then fills this panel ------------
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showPrecedents(panel, status, data) {
    if (data.after_pick) {
      status.textContent = "This queue is blind: how similar items were decided shows after your pick.";
      return;
    }
    if (!data.precedents.length) {
      status.textContent = "No similar item has been decided yet.";
      return;
    }
    const list = element("ol", "precedent-list");
    data.precedents.forEach((p, i) => {
      const item = element("li", "precedent");
      const link = element("a");
      link.href = p.href;
      if (i === 0) link.dataset.focusKey = "p";
      link.append(element("code", "", p.item_id));
      item.append(link);
      if (p.other_queue) item.append(" ", element("span", "muted", "in " + p.queue));
      item.append(" ", element("strong", "decided", p.decided), " ",
        element("span", "muted", "by " + p.by + (p.adjudicated ? " (adjudicated)" : "") + ", " + p.when));
      p.notes.forEach((note) => item.append(element("div", "text note-text", note)));
      const snippet = element("div", "text snippet");
      p.snippet.forEach((part) =>
        snippet.append(part.hit ? element("mark", "hit", part.text) : document.createTextNode(part.text)));
      item.append(snippet);
      list.append(item);
    });
    status.replaceWith(list);
    panel.dataset.loaded = "true";
  }

  const precedents = document.querySelector("section.precedents[data-src]");
  if (precedents) {
    const status = precedents.querySelector(".precedents-status");
    fetch(precedents.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
      .then((data) => showPrecedents(precedents, status, data))
      .catch(() => {
        // The link in the status line still opens them on the item's page.
        const note = status.querySelector(".precedents-note");
        if (note) note.textContent = "Precedents could not be loaded now.";
      });
  }

  // -- lease countdown and heartbeat -------------------------------------------------------
  const lease = document.getElementById("lease");
  if (lease && form) {
    const leaseSeconds = parseFloat(lease.dataset.lease) || 600;
    let deadline = Date.now() + parseFloat(lease.dataset.expiresIn) * 1000;
    let lastActive = Date.now();
    let expired = false;
    ["keydown", "mousedown", "mousemove", "scroll", "touchstart"].forEach((name) =>
      addEventListener(name, () => { lastActive = Date.now(); }, { passive: true }));

    const tick = () => {
      const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      if (expired || left === 0) {
        lease.textContent = "expired: reload for your next item";
        lease.className = "expired";
        return;
      }
      lease.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      lease.className = left < 60 ? "low" : "";
    };

    const beat = async () => {
      // An idle tab stops renewing, so an abandoned item goes back to the pool.
      if (expired || sent || Date.now() - lastActive > leaseSeconds * 1000) return;
      const body = new URLSearchParams();
      ["token", "sig", "item_id"].forEach((k) => body.append(k, form.elements.namedItem(k).value));
      try {
        const response = await fetch(lease.dataset.url, {
          method: "POST",
          headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
          body: body,
          credentials: "same-origin",
        });
        const data = await response.json();
        if (response.ok) deadline = Date.now() + data.expires_in * 1000;
        else if (response.status === 409) expired = true;
      } catch (err) {
        // Offline for a moment: the countdown shows how long the lease still holds.
      }
      tick();
    };

    tick();
    setInterval(tick, 1000);
    setInterval(beat, Math.min(60, Math.max(5, leaseSeconds / 3)) * 1000);
  }
})();
