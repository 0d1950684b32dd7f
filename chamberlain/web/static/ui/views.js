// The dashboard's pages. Each view takes a context ({scopes, signal}) and the
// element to fill, and stops its streams when the context's signal aborts (the
// user navigated away).

import {api, grants, stream} from "./api.js";
import {badge, h, jsonView, notice, when} from "./dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "dead", "timed_out", "cancelled"];
const TERMINAL = new Set(["succeeded", "failed", "dead", "timed_out", "cancelled"]);

function jobLink(id) {
  return h("a", {href: `#/job/${encodeURIComponent(id)}`, class: "mono"}, id.slice(0, 8));
}

function fail(root, error) {
  root.append(notice(error.message));
}

// -- overview ---------------------------------------------------------------------

export async function overview(ctx, root) {
  const refresh = h("button", {type: "button", id: "refresh", onclick: () => {
    root.replaceChildren();
    overview(ctx, root).catch((error) => fail(root, error));
  }}, "Refresh");
  root.append(h("div", {class: "title-row"}, h("h1", {}, "Overview"), refresh));
  // Ask only for what the token may read: a refusal would just be noise here.
  const jobsAllowed = grants(ctx.scopes, "jobs:ro");
  const hidden = Promise.reject(new Error("Needs the jobs:ro scope."));
  hidden.catch(() => {});
  const [health, queue, failures] = await Promise.allSettled([
    api("healthz"),
    jobsAllowed ? api("queue?limit=20") : hidden,
    jobsAllowed ? api("jobs?status=failed,dead&limit=10") : hidden,
  ]);
  const cards = h("div", {class: "cards"});
  root.append(cards);
  let restartsSection = null;
  if (health.status === "fulfilled") {
    const hz = health.value;
    cards.append(
      card("Status", hz.status, "overview-status"),
      card("Running", `${hz.running} / ${hz.max_workers}`, "overview-running"),
      card("Queued", String(hz.queue_depth), "overview-queued"),
      card("Plugins", String(hz.plugins_loaded)),
      card("Restarts", String(hz.restarts_total ?? 0)),
    );
    // Most actors never restart: list those that did, and fold the rest away.
    const restarts = Object.entries(hz.restarts ?? {});
    const restarted = restarts.filter(([, n]) => n > 0);
    restartsSection = h("section", {"aria-labelledby": "restarts-h", id: "restarts"},
      h("h2", {id: "restarts-h"}, "Supervision restarts"),
      restarted.length === 0 ? h("p", {class: "muted"}, `No restarts among ${restarts.length} supervised actors.`) :
        table(["Actor", "Restarts"], restarted.map(([name, n]) => [name, String(n)])),
      h("details", {}, h("summary", {}, `All actors (${restarts.length})`),
        table(["Actor", "Restarts"], restarts.map(([name, n]) => [name, String(n)]))));
  } else fail(root, health.reason);
  if (health.status === "fulfilled" && health.value.config_hash) {
    root.append(configuration(ctx, health.value));
  }
  if (queue.status === "fulfilled") {
    const q = queue.value;
    root.append(h("section", {"aria-labelledby": "queue-h"},
      h("h2", {id: "queue-h"}, `Queue: ${q.running_total} running, ${q.queued_total} queued (max ${q.max_workers})`),
      q.running.length + q.queued.length === 0 ? h("p", {class: "muted"}, "Nothing running or queued.") :
        jobTable([...q.running, ...q.queued])));
  } else fail(root, queue.reason);
  if (restartsSection) root.append(restartsSection);
  if (failures.status === "fulfilled") {
    root.append(h("section", {"aria-labelledby": "fail-h"},
      h("h2", {id: "fail-h"}, "Recent failures"),
      failures.value.jobs.length === 0 ? h("p", {class: "muted"}, "No failed or dead jobs.") :
        jobTable(failures.value.jobs)));
  } else fail(root, failures.reason);
}

// Which configuration runs, and (for a token with the admin scope) reloading it:
// the answer lists every change, or every problem of a file that was refused.
function configuration(ctx, hz) {
  const loaded = h("span", {id: "config-loaded"}, when(hz.config_loaded_at));
  const hash = h("code", {id: "config-hash", title: hz.config_hash}, hz.config_hash.slice(0, 19));
  const result = h("div", {id: "reload-result", "aria-live": "polite"});
  const section = h("section", {"aria-labelledby": "config-h"},
    h("h2", {id: "config-h"}, "Configuration"),
    h("p", {}, "Loaded ", loaded, ", file ", hash));
  if (grants(ctx.scopes, "admin")) {
    const reload = h("button", {type: "button", id: "reload", onclick: async () => {
      reload.disabled = true;
      result.replaceChildren();
      try {
        const answer = await api("system/reload", {method: "POST"});
        loaded.replaceChildren(when(answer.config_loaded_at));
        hash.textContent = answer.config_hash.slice(0, 19);
        hash.title = answer.config_hash;
        result.append(notice(`Reloaded: ${answer.message}`, "ok"));
        if (answer.changes.length > 0) {
          result.append(table(["Path", "Change", "Detail"],
            answer.changes.map((c) => [c.path, c.change, c.detail ?? ""])));
        }
      } catch (error) {
        result.append(notice(error.message));
        const problems = error.data?.problems ?? [];
        if (problems.length > 0) {
          result.append(table(["Path", "Problem"],
            problems.map((p) => [p.path || "(the file)", p.message])));
        }
      } finally { reload.disabled = false; }
    }}, "Reload configuration");
    section.append(reload);
  }
  section.append(result);
  return section;
}

function card(label, value, id) {
  return h("div", {class: "card", id}, h("span", {class: "card-label"}, label),
    h("span", {class: "card-value"}, value));
}

function table(head, rows) {
  return h("div", {class: "scroll"}, h("table", {},
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {scope: "col"}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

function jobRow(job) {
  return h("tr", {"data-job": job.job_id},
    h("td", {}, jobLink(job.job_id)),
    h("td", {}, job.plugin),
    h("td", {}, job.command),
    h("td", {class: "status-cell"}, badge(job.status)),
    h("td", {}, String(job.attempt ?? "")),
    h("td", {}, when(job.created_at)),
    h("td", {class: "error-cell"}, job.last_error ?? ""));
}

function jobTable(jobs, id) {
  return h("div", {class: "scroll"}, h("table", {id, class: "jobs"},
    h("thead", {}, h("tr", {},
      ["Job", "Plugin", "Command", "Status", "Attempt", "Created", "Last error"].map(
        (c) => h("th", {scope: "col"}, c)))),
    h("tbody", {}, jobs.map(jobRow))));
}

// A worktree job's changes, and the pull request that proposes them: its link once
// opened, else (for a succeeded job and a token that may) a form that opens one.
function pullRequestSection(id, record, canWrite) {
  const c = record.changes;
  const section = h("section", {id: "pull-request", "aria-labelledby": "pr-h"},
    h("h2", {id: "pr-h"}, "Pull request"),
    h("p", {}, `${c.files_changed} file${c.files_changed === 1 ? "" : "s"} changed,`
      + ` +${c.insertions} -${c.deletions}`));
  const opened = (pr) => h("p", {id: "pr-link"}, "Opened: ",
    h("a", {href: pr.pr_url, rel: "noreferrer", target: "_blank"}, pr.pr_url),
    ` (${pr.branch} → ${pr.target_branch})`);
  if (record.pull_request?.pr_url) {
    section.append(opened(record.pull_request));
    return section;
  }
  if (record.pull_request?.error) section.append(notice(`Not opened: ${record.pull_request.error}`));
  if (!canWrite || record.status !== "succeeded") return section;
  const title = h("input", {id: "pr-title", name: "title", type: "text", "aria-required": "true"});
  const body = h("textarea", {id: "pr-body", name: "body", rows: 3});
  const draft = h("input", {id: "pr-draft", name: "draft", type: "checkbox"});
  const feedback = h("div", {"aria-live": "polite"});
  const form = h("form", {class: "command", onsubmit: async (event) => {
    event.preventDefault();
    if (!title.value.trim()) { feedback.replaceChildren(notice("title is required")); return; }
    const ask = {title: title.value.trim(), draft: draft.checked};
    if (body.value.trim()) ask.body = body.value;
    submit.disabled = true;
    try {
      const pr = await api(`job/${encodeURIComponent(id)}/pull-request`, {method: "POST", body: ask});
      form.replaceWith(opened(pr));
    } catch (error) { feedback.replaceChildren(notice(error.message)); submit.disabled = false; }
  }},
    h("div", {class: "field"}, h("label", {for: "pr-title"}, "Title"), title),
    h("div", {class: "field"}, h("label", {for: "pr-body"}, "Description"), body),
    h("div", {class: "field"}, h("label", {for: "pr-draft"}, draft, " Draft")));
  const submit = h("button", {type: "submit"}, "Open pull request");
  form.append(h("div", {class: "actions"}, submit), feedback);
  section.append(form);
  return section;
}

// -- jobs ---------------------------------------------------------------------------

export async function jobs(ctx, root, query) {
  const params = new URLSearchParams(query);
  const status = params.get("status") ?? "";
  const plugin = params.get("plugin") ?? "";
  const text = params.get("q") ?? "";
  const after = params.get("after");
  root.append(h("h1", {}, "Jobs"));

  let plugins = [];
  try { plugins = (await api("plugins")).plugins.map((p) => p.name); } catch { plugins = []; }
  const statusSelect = h("select", {id: "filter-status", name: "status"},
    h("option", {value: ""}, "any"),
    STATUSES.map((s) => h("option", {value: s, selected: s === status}, s)));
  const pluginSelect = h("select", {id: "filter-plugin", name: "plugin"},
    h("option", {value: ""}, "any"),
    plugins.map((p) => h("option", {value: p, selected: p === plugin}, p)));
  const textInput = h("input", {id: "filter-text", name: "q", type: "search", value: text,
    placeholder: "id, command, error…"});
  const form = h("form", {class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (statusSelect.value) next.set("status", statusSelect.value);
    if (pluginSelect.value) next.set("plugin", pluginSelect.value);
    if (textInput.value) next.set("q", textInput.value);
    location.hash = `#/jobs?${next}`;
  }},
    h("label", {for: "filter-status"}, "Status"), statusSelect,
    h("label", {for: "filter-plugin"}, "Plugin"), pluginSelect,
    h("label", {for: "filter-text"}, "Text"), textInput,
    h("button", {type: "submit"}, "Filter"));
  root.append(form);

  const request = new URLSearchParams({limit: params.get("limit") ?? "50"});
  if (status) request.set("status", status);
  if (plugin) request.set("plugin", plugin);
  if (text) request.set("q", text);
  if (after) request.set("after", after);
  let page;
  try { page = await api(`jobs?${request}`); } catch (error) { fail(root, error); return; }

  // The server searched; a job that turns up live is held to the same rule here
  // (the id's start, or the plugin, command or submitter containing the text).
  const needle = text.toLowerCase();
  const matches = (job) => !needle || job.job_id.toLowerCase().startsWith(needle) ||
    [job.plugin, job.command, job.submitted_by ?? ""].some((v) => String(v).toLowerCase().includes(needle));
  const tableEl = jobTable(page.jobs, "jobs-table");
  const tbody = tableEl.querySelector("tbody");
  root.append(h("p", {class: "muted", id: "jobs-total"},
    `${page.total} job${page.total === 1 ? "" : "s"} match${needle ? ` “${text}”` : ""}`),
  tableEl);
  const pager = h("nav", {class: "pager", "aria-label": "Pages of jobs"});
  if (after) pager.append(h("a", {href: `#/jobs?${withAfter(params, null)}`}, "First page"));
  if (page.next) pager.append(h("a", {href: `#/jobs?${withAfter(params, page.next)}`, id: "next-page"}, "Older jobs →"));
  root.append(pager);

  // Live: update rows in place, and put new jobs on top of the first page.
  if (!grants(ctx.scopes, "events:ro")) return;
  const live = new URLSearchParams();
  if (plugin) live.set("plugin", plugin);
  const tableNode = tableEl.querySelector("table");
  stream(`events/stream?${live}`, (name, data) => {
    // Marks the table live, for the user and for tests waiting on it.
    if (name === "connected") tableNode.setAttribute("data-live", "connected");
    if (name !== "status" || !data.job_id) return;
    const row = tbody.querySelector(`tr[data-job="${CSS.escape(data.job_id)}"]`);
    if (row) {
      if (status && data.status !== status) { row.classList.add("stale"); }
      row.querySelector(".status-cell").replaceChildren(badge(data.status));
      return;
    }
    if (after || (status && data.status !== status)) return;
    const job = {job_id: data.job_id, plugin: data.plugin, command: data.command,
      status: data.status, attempt: data.attempt, created_at: data.ts, last_error: null};
    if (!matches(job)) return;
    tbody.prepend(jobRow(job));
  }, {signal: ctx.signal}).catch((error) => root.append(notice(error.message)));
}

function withAfter(params, cursor) {
  const next = new URLSearchParams(params);
  if (cursor) next.set("after", cursor); else next.delete("after");
  return next;
}

// -- one job ------------------------------------------------------------------------

export async function job(ctx, root, id) {
  let record;
  try { record = await api(`job/${encodeURIComponent(id)}`); } catch (error) {
    root.append(h("h1", {}, "Job"));
    fail(root, error);
    return;
  }
  const statusEl = h("span", {id: "job-status"}, badge(record.status));
  const feedback = h("div", {id: "job-feedback", "aria-live": "polite"});
  const actions = h("div", {class: "actions"});
  const canWrite = grants(ctx.scopes, "jobs:rw");
  const cancel = h("button", {type: "button", id: "cancel", class: "danger", onclick: async () => {
    cancel.disabled = true;
    try {
      const answer = await api(`job/${encodeURIComponent(id)}/cancel`, {method: "POST"});
      setStatus(answer.status);
      feedback.replaceChildren(notice(`Cancel: ${answer.status}`, "ok"));
    } catch (error) { feedback.replaceChildren(notice(error.message)); cancel.disabled = false; }
  }}, "Cancel");
  const retry = h("button", {type: "button", id: "retry", onclick: async () => {
    retry.disabled = true;
    try {
      const answer = await api(`job/${encodeURIComponent(id)}/retry`, {method: "POST", body: {}});
      location.hash = `#/job/${encodeURIComponent(answer.job_id)}`;
    } catch (error) { feedback.replaceChildren(notice(error.message)); retry.disabled = false; }
  }}, "Retry");
  if (canWrite) actions.append(cancel, retry);
  function setStatus(value) {
    record.status = value;
    statusEl.replaceChildren(badge(value));
    cancel.hidden = TERMINAL.has(value);
    retry.hidden = !TERMINAL.has(value);
  }
  setStatus(record.status);

  const fields = ["plugin", "command", "attempt", "max_attempts", "submitted_by", "created_at",
    "started_at", "completed_at", "next_retry_at", "last_error", "parent_job_id", "root_job_id",
    "pipeline", "step_id", "schedule_id"];
  const facts = h("dl", {class: "facts", id: "job-facts"});
  const renderFacts = () => facts.replaceChildren(...fields.filter((f) => record[f] !== null && record[f] !== undefined)
    .flatMap((f) => [h("dt", {}, f), h("dd", {}, f.endsWith("_at") ? when(record[f]) :
      f.endsWith("job_id") ? jobLink(record[f]) : String(record[f]))]));
  renderFacts();
  const resultBox = h("div", {id: "job-result"}, jsonView(record.result ?? null));
  const conversation = canWrite ? interactiveForm(id, feedback) : null;
  // Only an interactive job waits for input or writes output lines: the form shows then.
  const interactive = (data) => data.kind === "stdout" || data.kind === "user_input" ||
    (data.kind === "system" && data.text === "waiting for input");
  if (conversation && record.waiting_for_input && !TERMINAL.has(record.status)) conversation.hidden = false;
  const messages = h("ol", {id: "messages", class: "messages", "aria-live": "polite"});
  root.append(
    h("h1", {}, "Job ", h("span", {class: "mono"}, id), " ", statusEl),
    actions, feedback,
    h("p", {}, h("a", {href: `#/tree/${encodeURIComponent(id)}`, id: "tree-link"}, "Lineage tree")),
    facts,
    h("h2", {}, "Payload"), h("div", {id: "job-payload"}, jsonView(record.payload ?? null)),
    h("h2", {}, "Result"), resultBox,
    h("h2", {}, "Messages"), messages, conversation);
  if (record.loop) root.append(loopSection(ctx, id, canWrite, feedback));
  if (record.workspace_id && record.changes) root.append(pullRequestSection(id, record, canWrite));

  stream(`job/${encodeURIComponent(id)}/stream`, (name, data) => {
    if (name === "message" || name === "status") {
      messages.append(h("li", {class: `msg kind-${data.kind}`},
        h("span", {class: "msg-kind"}, data.kind), " ", when(data.ts), " ",
        h("span", {class: "msg-text"}, data.text)));
      if (data.status) setStatus(data.status);
      if (conversation && interactive(data) && !TERMINAL.has(record.status)) conversation.hidden = false;
      if (conversation && TERMINAL.has(record.status)) conversation.hidden = true;
    } else if (name === "done" && data.job) {
      if (conversation) conversation.hidden = true;
      record = data.job;
      setStatus(record.status);
      renderFacts();
      resultBox.replaceChildren(jsonView(record.result ?? null));
    }
  }, {signal: ctx.signal, until: ["done"]}).catch((error) => feedback.append(notice(error.message)));
}

// A loop job's iterations: looked at again every 2 s until the loop has ended.
function loopSection(ctx, id, canWrite, feedback) {
  const path = `job/${encodeURIComponent(id)}/iterations`;
  const summary = h("p", {id: "loop-summary"});
  const body = h("tbody", {});
  const stop = h("button", {type: "button", id: "stop-loop", class: "danger", hidden: true, onclick: async () => {
    stop.disabled = true;
    try {
      await api(`job/${encodeURIComponent(id)}/stop`, {method: "POST", body: {}});
      feedback.replaceChildren(notice("The loop stops after this iteration", "ok"));
    } catch (error) { feedback.replaceChildren(notice(error.message)); stop.disabled = false; }
  }}, "Stop loop");
  const section = h("section", {id: "iterations", "aria-labelledby": "iterations-h"},
    h("h2", {id: "iterations-h"}, "Iterations"), summary, canWrite ? stop : null,
    h("div", {class: "scroll"}, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Started", "Completed", "Exit", "Done?", "Feedback", "Output"].map(
        (c) => h("th", {scope: "col"}, c)))), body)));
  let timer = null;
  async function look() {
    let view;
    try { view = await api(path); } catch (error) { summary.replaceChildren(notice(error.message)); return; }
    const ended = TERMINAL.has(view.status);
    summary.replaceChildren(`Iteration ${view.current_iteration ?? 0} of ${view.max_iterations}`,
      view.completion_reason ? ` — ${view.completion_reason}` : "", view.stop_requested ? " (stop requested)" : "");
    stop.hidden = ended || view.stop_requested;
    body.replaceChildren(...view.iterations.map((it) => h("tr", {},
      h("td", {}, String(it.number)), h("td", {}, when(it.started_at)), h("td", {}, when(it.completed_at)),
      h("td", {}, it.exit_code === null || it.exit_code === undefined ? "" : String(it.exit_code)),
      h("td", {}, it.promise_detected ? "yes" : "no"),
      h("td", {}, (it.feedback_results ?? []).map((f) => [badge(f.passed ? "passed" : "failed"), " "])),
      h("td", {class: "error-cell"}, it.error ?? it.output_summary ?? ""))));
    if (ended && timer !== null) { clearInterval(timer); timer = null; }
  }
  look();
  timer = setInterval(look, 2000);
  ctx.signal.addEventListener("abort", () => { if (timer !== null) clearInterval(timer); });
  return section;
}

function interactiveForm(id, feedback) {
  const input = h("input", {id: "message-text", name: "message", type: "text", autocomplete: "off"});
  const send = h("button", {type: "submit"}, "Send");
  const complete = h("button", {type: "button", id: "complete", onclick: async () => {
    try {
      await api(`job/${encodeURIComponent(id)}/complete`, {method: "POST", body: {}});
      feedback.replaceChildren(notice("Completing the conversation", "ok"));
    } catch (error) { feedback.replaceChildren(notice(error.message)); }
  }}, "Complete");
  return h("form", {id: "conversation", class: "conversation", hidden: true, onsubmit: async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) { feedback.replaceChildren(notice("the message is empty")); return; }
    send.disabled = true;
    try {
      await api(`job/${encodeURIComponent(id)}/message`, {method: "POST", body: {message: text}});
      input.value = "";
      feedback.replaceChildren();
    } catch (error) { feedback.replaceChildren(notice(error.message)); }
    send.disabled = false;
    input.focus();
  }},
    h("label", {for: "message-text"}, "Message to the job"), input, send, complete);
}

export async function tree(ctx, root, id) {
  root.append(h("h1", {}, "Lineage of ", h("span", {class: "mono"}, id.slice(0, 8))));
  try {
    const found = await api(`job/${encodeURIComponent(id)}/tree`);
    const byParent = new Map();
    for (const j of found) {
      const key = j.parent_job_id ?? "";
      if (!byParent.has(key)) byParent.set(key, []);
      byParent.get(key).push(j);
    }
    const ids = new Set(found.map((j) => j.job_id));
    const branch = (jobsHere) => h("ul", {class: "tree"}, jobsHere.map((j) => h("li", {},
      jobLink(j.job_id), ` ${j.plugin}/${j.command} `, badge(j.status),
      byParent.has(j.job_id) ? branch(byParent.get(j.job_id)) : null)));
    root.append(branch(found.filter((j) => !j.parent_job_id || !ids.has(j.parent_job_id))));
  } catch (error) { fail(root, error); }
}

// -- plugins and the trigger forms ----------------------------------------------------

export async function plugins(ctx, root) {
  root.append(h("h1", {}, "Plugins"));
  let found;
  try { found = (await api("plugins?detail=1")).plugins; } catch (error) { fail(root, error); return; }
  for (const plugin of found) {
    const section = h("section", {class: "plugin", "aria-labelledby": `plugin-${plugin.name}`},
      h("h2", {id: `plugin-${plugin.name}`}, plugin.name, " ", h("span", {class: "muted"}, plugin.version ?? "")),
      h("p", {}, plugin.description ?? ""));
    for (const command of plugin.commands) section.append(commandForm(ctx, plugin.name, command));
    root.append(section);
  }
}

function commandForm(ctx, pluginName, command) {
  const base = `${pluginName}-${command.name}`;
  const scope = command.type === "read" ? "plugin:ro" : "plugin:rw";
  const schema = command.input_schema ?? null;
  const properties = schema && schema.properties ? schema.properties : null;
  const required = new Set(schema?.required ?? []);
  const feedback = h("div", {"aria-live": "polite", id: `${base}-feedback`});
  const inputs = [];
  const body = h("div", {class: "fields"});
  if (properties) {
    for (const [name, spec] of Object.entries(properties)) {
      const id = `${base}-${name}`;
      const type = Array.isArray(spec.type) ? spec.type.find((t) => t !== "null") : spec.type;
      let input;
      if (Array.isArray(spec.enum)) {
        input = h("select", {id, name}, required.has(name) ? null : h("option", {value: ""}, ""),
          spec.enum.map((v) => h("option", {value: JSON.stringify(v)}, String(v))));
      } else if (type === "boolean") {
        input = h("input", {id, name, type: "checkbox"});
      } else if (type === "object" || type === "array") {
        input = h("textarea", {id, name, rows: 2, placeholder: type === "array" ? "[…] JSON" : "{…} JSON"});
      } else {
        input = h("input", {id, name, type: type === "integer" || type === "number" ? "number" : "text",
          step: type === "number" ? "any" : type === "integer" ? "1" : null, required: required.has(name)});
      }
      inputs.push({name, type, input, enumerated: Array.isArray(spec.enum)});
      body.append(h("div", {class: "field"},
        h("label", {for: id}, name, required.has(name) ? h("span", {class: "req", "aria-label": "required"}, " *") : null,
          h("span", {class: "muted"}, ` ${type ?? "any"}`)),
        input, spec.description ? h("small", {class: "muted"}, spec.description) : null));
    }
  } else {
    const input = h("textarea", {id: `${base}-payload`, name: "payload", rows: 3, placeholder: "{} JSON payload"});
    inputs.push({name: null, type: "object", input});
    body.append(h("div", {class: "field"}, h("label", {for: `${base}-payload`}, "Payload (JSON object)"), input));
  }

  function collect() {
    const payload = {};
    for (const {name, type, input, enumerated} of inputs) {
      const raw = input.type === "checkbox" ? input.checked : input.value.trim();
      if (raw === "" && name !== null) {
        if (required.has(name)) throw new Error(`${name} is required`);
        continue;
      }
      let value = raw;
      if (enumerated) value = JSON.parse(raw);
      else if (type === "integer" || type === "number") {
        value = Number(raw);
        if (!Number.isFinite(value) || (type === "integer" && !Number.isInteger(value))) {
          throw new Error(`${name} must be ${type === "integer" ? "an integer" : "a number"}`);
        }
      } else if (type === "object" || type === "array") {
        if (raw === "") { value = {}; } else {
          try { value = JSON.parse(raw); } catch { throw new Error(`${name ?? "payload"} is not valid JSON`); }
        }
        const isArray = Array.isArray(value);
        if (type === "array" ? !isArray : (isArray || value === null || typeof value !== "object")) {
          throw new Error(`${name ?? "payload"} must be a JSON ${type}`);
        }
      }
      if (name === null) return value;
      payload[name] = value;
    }
    return payload;
  }

  const allowed = grants(ctx.scopes, scope);
  const form = h("form", {class: "command", id: `${base}-form`, novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    let payload;
    try { payload = collect(); } catch (error) { feedback.replaceChildren(notice(error.message)); return; }
    button.disabled = true;
    try {
      const answer = await api(`trigger/${encodeURIComponent(pluginName)}/${encodeURIComponent(command.name)}`,
        {method: "POST", body: {payload}});
      location.hash = `#/job/${encodeURIComponent(answer.job_id)}`;
    } catch (error) {
      feedback.replaceChildren(notice(error.message));
      button.disabled = false;
    }
  }},
    h("h3", {}, command.name, " ", h("span", {class: "muted"}, command.type)),
    command.description ? h("p", {class: "muted"}, command.description) : null,
    body, feedback);
  const button = h("button", {type: "submit", id: `${base}-submit`}, `Run ${command.name}`);
  if (allowed) form.append(button);
  return form;
}

// -- schedules ------------------------------------------------------------------------

export async function schedules(ctx, root) {
  root.append(h("h1", {}, "Schedules"));
  let found;
  try { found = (await api("schedules")).schedules; } catch (error) { fail(root, error); return; }
  if (found.length === 0) { root.append(h("p", {class: "muted"}, "No schedules are configured.")); return; }
  const canReset = grants(ctx.scopes, "jobs:rw");
  const rows = new Map(found.map((s) => [`${s.plugin}/${s.id}`, scheduleRow(s, canReset)]));
  root.append(h("div", {class: "scroll"}, h("table", {id: "schedules-table"},
    h("thead", {}, h("tr", {}, ["Schedule", "Command", "When", "Next run", "Last run", "Breaker", ""].map(
      (c) => h("th", {scope: "col"}, c)))),
    h("tbody", {}, [...rows.values()].map((r) => r.element)))));
  // Runs come and breakers change on their own: look again every few seconds.
  const timer = setInterval(async () => {
    try {
      for (const s of (await api("schedules")).schedules) rows.get(`${s.plugin}/${s.id}`)?.update(s);
    } catch { /* the next tick tries again; a 401 already sent the user to log in */ }
  }, 2000);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));
}

function scheduleRow(s, canReset) {
  const key = `${s.plugin}/${s.id}`;
  const nextCell = h("td", {});
  const lastCell = h("td", {});
  const breakerCell = h("td", {class: "breaker-cell"});
  const actionCell = h("td", {});
  const feedback = h("span", {"aria-live": "polite"});
  let shown = "";
  function update(schedule) {
    const breaker = schedule.breaker;
    // Redrawn only when something changed, so a focused button stays put.
    const state = JSON.stringify([schedule.next_run, schedule.last_run, schedule.last_status, breaker?.state, breaker?.failures]);
    if (state === shown) return;
    shown = state;
    nextCell.replaceChildren(when(schedule.next_run));
    lastCell.replaceChildren(when(schedule.last_run), " ", schedule.last_status ? badge(schedule.last_status) : "",
      schedule.last_job_id ? " " : "", schedule.last_job_id ? jobLink(schedule.last_job_id) : "");
    breakerCell.replaceChildren(breaker ? h("span", {class: `badge breaker-${breaker.state}`}, breaker.state) : "—",
      breaker && breaker.failures ? h("span", {class: "muted"}, ` ${breaker.failures} failure${breaker.failures === 1 ? "" : "s"}`) : "");
    actionCell.replaceChildren();
    if (canReset && breaker && breaker.state !== "closed") {
      const button = h("button", {type: "button", onclick: async () => {
        button.disabled = true;
        try {
          update(await api(`schedules/${encodeURIComponent(schedule.plugin)}/${encodeURIComponent(schedule.id)}/reset`,
            {method: "POST", body: {reason: "reset from the dashboard"}}));
          feedback.replaceChildren(notice("Breaker closed", "ok"));
        } catch (error) { feedback.replaceChildren(notice(error.message)); button.disabled = false; }
      }}, "Reset breaker");
      actionCell.append(button);
    }
    actionCell.append(feedback);
  }
  update(s);
  const element = h("tr", {"data-schedule": key},
    h("td", {class: "mono"}, key),
    h("td", {}, s.command),
    h("td", {}, `${s.kind} ${s.spec ?? ""}${s.timezone ? ` (${s.timezone})` : ""}`),
    nextCell, lastCell, breakerCell, actionCell);
  return {element, update};
}

// -- pipeline runs ------------------------------------------------------------------------

export async function runs(ctx, root) {
  root.append(h("h1", {}, "Runs"));
  let found;
  try { found = await api("runs?limit=50"); } catch (error) { fail(root, error); return; }
  if (found.runs.length === 0) { root.append(h("p", {class: "muted"}, "No pipeline has run yet.")); return; }
  root.append(h("p", {class: "muted"}, `${found.total} run${found.total === 1 ? "" : "s"}`),
    h("div", {class: "scroll"}, h("table", {id: "runs-table"},
      h("thead", {}, h("tr", {}, ["Run", "Pipeline", "Status", "Created", "Steps"].map((c) => h("th", {scope: "col"}, c)))),
      h("tbody", {}, found.runs.map((r) => h("tr", {"data-run": r.run_id},
        h("td", {}, h("a", {href: `#/run/${encodeURIComponent(r.run_id)}`, class: "mono"}, r.run_id.slice(0, 8))),
        h("td", {}, r.pipeline), h("td", {}, badge(r.status)), h("td", {}, when(r.created_at)),
        h("td", {}, r.steps.map((s) => [badge(s.status), " ", s.step_id, " "]))))))));
}

export async function run(ctx, root, id) {
  const path = `runs/${encodeURIComponent(id)}`;
  let current;
  try { current = await api(path); } catch (error) {
    root.append(h("h1", {}, "Run"));
    fail(root, error);
    return;
  }
  const heading = h("h1", {});
  const steps = h("div", {id: "run-steps"});
  const events = h("ol", {id: "run-events", class: "messages"});
  root.append(heading, steps, h("section", {"aria-labelledby": "run-events-h"},
    h("h2", {id: "run-events-h"}, "Events"), events));
  const canDecide = grants(ctx.scopes, "jobs:rw");
  let shown = "";
  let lastEvent = null;

  // What happened to the run, oldest first; each look asks only for what is new.
  async function follow() {
    const query = new URLSearchParams({limit: "500"});
    if (lastEvent !== null) query.set("after", lastEvent);
    const answer = await api(`${path}/events?${query}`);
    for (const event of answer.events) {
      lastEvent = String(event.id);
      events.append(h("li", {"data-kind": event.kind},
        h("span", {class: "muted"}, event.kind), " ", when(event.at), " ",
        event.step_id ? h("span", {class: "mono"}, `${event.step_id} `) : null,
        event.text ?? "", event.actor ? h("span", {class: "muted"}, ` (${event.actor})`) : null));
    }
  }

  function render(view) {
    // Redrawn only when it changed, so a comment being typed is not lost.
    const state = JSON.stringify(view);
    if (state === shown) return;
    shown = state;
    heading.replaceChildren("Run ", h("span", {class: "mono"}, view.run_id.slice(0, 8)), " ",
      view.pipeline, " ", h("span", {id: "run-status"}, badge(view.status)));
    steps.replaceChildren(...view.steps.map((step) => stepCard(step)));
  }

  function stepCard(step) {
    const card = h("section", {class: "command", "data-step": step.step_id, "aria-labelledby": `step-${step.step_id}`},
      h("h2", {id: `step-${step.step_id}`}, step.step_id, " ", h("span", {class: "step-status"}, badge(step.status))),
      step.job_ids.length ? h("p", {}, "Jobs: ", step.job_ids.map((j) => [jobLink(j), " "])) : null,
      step.approval?.decision ? decided(step.approval.decision) : null);
    if (step.status === "awaiting_approval" && canDecide) card.append(decisionForm(step));
    return card;
  }

  function decided(d) {
    return h("p", {class: "decision"}, badge(d.decision), ` by ${d.by} `, when(d.at),
      d.comment ? `: ${d.comment}` : "");
  }

  function decisionForm(step) {
    const base = `decide-${step.step_id}`;
    const comment = h("input", {id: `${base}-comment`, type: "text", name: "comment"});
    const inputs = h("textarea", {id: `${base}-inputs`, name: "inputs", rows: 2, placeholder: "{} JSON, if the step asks for inputs"});
    const feedback = h("div", {"aria-live": "polite"});
    const decide = (word) => async () => {
      const body = {};
      if (comment.value.trim()) body.comment = comment.value.trim();
      if (word === "approve" && inputs.value.trim()) {
        try { body.inputs = JSON.parse(inputs.value); } catch { feedback.replaceChildren(notice("inputs is not valid JSON")); return; }
      }
      try {
        const answer = await api(`${path}/steps/${encodeURIComponent(step.step_id)}/${word}`, {method: "POST", body});
        feedback.replaceChildren(notice(answer.message, "ok"));
        render(await api(path));
      } catch (error) { feedback.replaceChildren(notice(error.message)); }
    };
    return h("div", {class: "decide"},
      h("div", {class: "field"}, h("label", {for: `${base}-comment`}, "Comment"), comment),
      h("div", {class: "field"}, h("label", {for: `${base}-inputs`}, "Inputs (JSON)"), inputs),
      h("div", {class: "actions"},
        h("button", {type: "button", onclick: decide("approve")}, "Approve"),
        h("button", {type: "button", class: "danger", onclick: decide("reject")}, "Reject")),
      feedback);
  }

  render(current);
  await follow().catch((error) => events.append(h("li", {}, notice(error.message))));
  // A run moves on by itself: look again every 2 s while the page is open.
  const timer = setInterval(async () => {
    try { render(await api(path)); await follow(); } catch { /* the next tick tries again */ }
  }, 2000);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));
}
