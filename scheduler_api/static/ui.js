// The dashboard's script (scheduler_api/ui.py): changes go to the JSON API with fetch()
// (same origin; the browser sends the Basic credentials it holds, nothing is stored here),
// and the live part of the page is fetched again when the event stream says it changed.
"use strict";

(function () {
  const body = document.body;
  const api = body.dataset.api;
  const flash = document.getElementById("flash");

  function say(text, isError) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = isError ? "error" : "";
  }

  async function send(method, url, payload) {
    const response = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify(payload || {}),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (ignored) { data = null; }
    }
    return {ok: response.ok, status: response.status, data: data};
  }

  // -- the live part: fetched again, parsed, swapped in (open <details> stay open) ----------
  let pending = null;
  async function refresh() {
    const live = document.getElementById("live");
    if (!live) return;
    const response = await fetch(window.location.href, {credentials: "same-origin"});
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("live");
    if (!fresh) return;
    const open = Array.from(live.querySelectorAll("details[open]")).map((d) => d.id);
    live.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
    open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
  }
  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 250);
  }

  // -- buttons: pause, resume, run, delete, the scheduler's controls -------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.action");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      const answer = await send(button.dataset.method, button.dataset.url);
      if (!answer.ok) {
        say((answer.data && answer.data.error_message) || ("failed: " + answer.status), true);
      } else if (button.dataset.after) {
        window.location.assign(button.dataset.after);
        return;
      } else {
        say(button.textContent + ": done", false);
        await refresh();
      }
    } catch (error) {
      say("the request failed: " + error, true);
    } finally {
      button.disabled = false;
    }
  });

  // -- the add and edit form --------------------------------------------------------------
  const form = document.getElementById("job-form");
  if (form) {
    const select = form.elements.trigger;
    const visibleSet = () => form.querySelector('fieldset.trigger[data-trigger="' +
      CSS.escape(select.value) + '"]');
    const showFields = () => {
      form.querySelectorAll("fieldset.trigger").forEach((set) => {
        set.hidden = set.dataset.trigger !== select.value;
      });
    };
    select.addEventListener("change", showFields);
    showFields();

    // The input an error slot describes (its aria-describedby names the slot).
    const inputOf = (slot) => form.querySelector('[aria-describedby~="' + slot.id + '"]');

    // Where the API's message about `field` goes: the visible trigger's own field first
    // (interval and calendarinterval both have weeks and days), then the job's fields; a
    // trigger field the visible and/or does not have is one of its children's.
    const slotFor = (field) => {
      const named = '[data-error-for="' + CSS.escape(field) + '"]';
      const set = visibleSet();
      const children = set && set.querySelector("[data-child-fields]");
      const childField = Boolean(children) &&
        children.dataset.childFields.split(" ").includes(field);
      let own = set && set.querySelector(named);
      // An and/or's own field left empty (its jitter) was not sent: the message is a child's.
      if (own && childField && !inputOf(own).value.trim()) own = null;
      return own || form.querySelector(".job-fields " + named) || (childField ? children : null);
    };

    const showError = (field, message) => {
      const slot = field ? slotFor(field) : null;
      (slot || document.getElementById("form-error")).textContent = message;
      const input = slot && inputOf(slot);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.focus({preventScroll: true});
      }
      // The message in view (below a tall textarea, focusing it would not show it).
      if (slot) slot.scrollIntoView({block: "center"});
    };

    // A field's value as the API takes it: numbers as numbers (text that is not one is sent
    // as typed, for the API to name the field), JSON parsed; throws on JSON that is not.
    const valueOf = (input) => {
      const text = input.value.trim();
      if (input.dataset.send === "number") return isNaN(Number(text)) ? text : Number(text);
      return input.dataset.send === "json" ? JSON.parse(text) : text;
    };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelectorAll(".field-error").forEach((slot) => { slot.textContent = ""; });
      form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
      const editing = form.dataset.mode === "edit";
      const inputs = Array.from(form.querySelectorAll(".job-fields [data-send]"));
      if (select.value) inputs.push(...visibleSet().querySelectorAll("[data-send]"));
      const payload = {};
      for (const input of inputs) {
        if (!input.value.trim() || (editing && input.name === "id")) continue;
        try { payload[input.name] = valueOf(input); } catch (ignored) {
          showError(input.name, input.name + ": is not valid JSON");
          return;
        }
      }
      if (select.value) payload.trigger = select.value;
      const id = form.elements.id.value.trim();
      const url = editing ? api + "/jobs/" + encodeURIComponent(id) : api + "/jobs";
      const answer = await send(editing ? "PATCH" : "POST", url, payload);
      if (answer.ok) {
        window.location.assign(body.dataset.ui + "/jobs/" + encodeURIComponent(id));
        return;
      }
      const message = (answer.data && answer.data.error_message) || ("failed: " + answer.status);
      // The API names the field first ("minutes: must be ..."); a refused func says "func ...".
      const match = /^([a-z_]+)[: ]/.exec(message);
      showError(match ? match[1] : "", message);
    });
  }

  // -- live: follow the event stream ------------------------------------------------------
  const live = document.getElementById("live");
  const watch = live && live.dataset.watch;
  if (watch && window.EventSource) {
    const stream = new EventSource(api + "/events");
    const relevant = (kind, data) => {
      if (watch === "scheduler") return kind === "scheduler_state" || kind === "leader_changed";
      if (watch === "jobs") return kind !== "leader_changed" && kind !== "scheduler_state";
      const jobId = data.job_id || (data.run && data.run.job_id);
      return kind === "scheduler_state" || ("job:" + jobId) === watch;
    };
    ["job_added", "job_changed", "job_removed", "all_jobs_removed", "run_started",
      "run_finished", "leader_changed", "scheduler_state"].forEach((kind) => {
      stream.addEventListener(kind, (event) => {
        let data = {};
        try { data = JSON.parse(event.data); } catch (ignored) { return; }
        if (relevant(kind, data)) refreshSoon();
      });
    });
    body.dataset.live = "on";
    stream.addEventListener("open", () => { body.dataset.live = "open"; });
  }
})();
