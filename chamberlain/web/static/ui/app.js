// The dashboard's entry point: the login form, the navigation and the hash router
// (#/overview, #/jobs?status=…, #/job/<id>, #/tree/<id>, #/plugins,
// #/schedules, #/runs, #/run/<id>).

import {api, token} from "./api.js";
import {h, notice} from "./dom.js";
import * as views from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logout = document.getElementById("logout");

let identity = null;
let current = null;

function login(message) {
  identity = null;
  nav.hidden = true;
  logout.hidden = true;
  who.textContent = "";
  const input = h("input", {id: "token", name: "token", type: "password", autocomplete: "off", required: true});
  const form = h("form", {class: "login", id: "login-form", onsubmit: async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    await start();
  }},
    h("h1", {}, "Log in"),
    h("label", {for: "token"}, "API token"), input,
    h("button", {type: "submit"}, "Log in"),
    message ? notice(message) : null);
  main.replaceChildren(form);
  input.focus();
}

async function start() {
  if (!token.get()) { login(); return; }
  try {
    identity = await api("whoami");
  } catch (error) {
    token.clear();
    login(error.message);
    return;
  }
  nav.hidden = false;
  logout.hidden = false;
  who.textContent = `${identity.name} (${identity.scopes.join(" ")})`;
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = "#/overview";
  else route();
}

async function route() {
  if (identity === null) return;
  current?.abort();
  current = new AbortController();
  const ctx = {scopes: identity.scopes, signal: current.signal};
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = h("div", {class: "view", "data-page": page});
  main.replaceChildren(root);
  try {
    if (page === "jobs") await views.jobs(ctx, root, query);
    else if (page === "job") await views.job(ctx, root, arg);
    else if (page === "tree") await views.tree(ctx, root, arg);
    else if (page === "plugins") await views.plugins(ctx, root);
    else if (page === "schedules") await views.schedules(ctx, root);
    else if (page === "runs") await views.runs(ctx, root);
    else if (page === "run") await views.run(ctx, root, arg);
    else await views.overview(ctx, root);
  } catch (error) {
    root.append(notice(error.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("chamberlain:unauthorized", () => { token.clear(); current?.abort(); login("The token was refused; log in again."); });
logout.addEventListener("click", () => { token.clear(); current?.abort(); location.hash = "#/login"; login(); });
start();
