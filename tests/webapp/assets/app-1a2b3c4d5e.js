// Herald test inbox: makes the same requests, in the same order and shape, as a DHIS2
// app-platform app such as the messaging app (docs: messaging-app.md §2-§4), then shows
// what it got. Any call that fails is listed in #errors as "<url> <status>[ <problem>]".
// body[data-state] ends as "login", "ready" or "error", for tests to wait on.

const PLACEHOLDER = "__DHIS2_" + "BASE_URL__"; // split, so no server rewrites it in this file
const HEADERS = { "X-Requested-With": "XMLHttpRequest", Accept: "application/json" };
const FOLDERS = ["PRIVATE", "VALIDATION_RESULT", "TICKET", "SYSTEM"];
const LIST_FIELDS =
  "id,displayName,subject,messageType,lastSender%5Bid%2C%20displayName%5D," +
  "assignee%5Bid%2C%20displayName%5D,status,priority,lastUpdated,read,lastMessage,followUp";

const $ = (selector) => document.querySelector(selector);
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// §2: the meta tag, unless it is still the placeholder or empty; then a core app's "..".
export function resolveBaseUrl(doc = document) {
  const meta = doc.querySelector('meta[name="dhis2-base-url"]');
  const content = meta ? (meta.getAttribute("content") || "").trim() : "";
  return content && content !== PLACEHOLDER ? content : "..";
}

// The platform's joinPath: strip leading and trailing slashes of every part, drop empty parts.
export function joinPath(...parts) {
  return parts
    .map((part) => String(part).replace(/^\/+|\/+$/g, ""))
    .filter((part) => part.length > 0)
    .join("/");
}

// "2.42.0" -> 42, "2.43-SNAPSHOT" -> 43; anything else has no API version.
export function apiVersion(version) {
  const match = /^2\.(\d+)/.exec(String(version ?? ""));
  return match ? Number(match[1]) : undefined;
}

function setState(state) {
  document.body.dataset.state = state;
}

function reportError(url, status, problem) {
  const item = document.createElement("li");
  item.textContent = problem ? `${url} ${status} ${problem}` : `${url} ${status}`;
  $("#errors").append(item);
}

// One fetch as the app runtime sends it; the body is parsed by Content-Type like the runtime does.
async function request(url, init = {}) {
  let response;
  try {
    response = await fetch(url, {
      credentials: "include",
      ...init,
      headers: { ...HEADERS, ...(init.headers || {}) },
    });
  } catch (error) {
    return { url, status: 0, ok: false, body: null, problem: String(error) };
  }
  const type = response.headers.get("content-type") || "";
  let body = null;
  let problem = null;
  try {
    if (type.includes("application/json")) body = await response.json();
    else if (type.startsWith("text/")) body = await response.text();
    else if (response.status !== 204) problem = `unexpected Content-Type "${type}"`;
  } catch (error) {
    problem = `invalid JSON: ${error.message}`;
  }
  return { url, status: response.status, ok: response.ok && !problem, body, problem };
}

// A JSON GET whose answer must be an object passing `check` (which returns a problem or null).
async function getJson(url, check = () => null) {
  const result = await request(url);
  let problem = result.problem;
  if (result.ok && !isObject(result.body)) problem = "not a JSON object";
  else if (result.ok) problem = check(result.body);
  if (!result.ok || problem) {
    reportError(url, result.status, problem);
    return null;
  }
  return result.body;
}

const hasPager = (body) =>
  isObject(body.pager) && Number.isInteger(body.pager.page) && Number.isInteger(body.pager.total)
    ? null
    : "pager.page and pager.total missing";

function currentFolder() {
  const folder = location.hash.replace(/^#\/?/, "").split("/")[0];
  return FOLDERS.includes(folder) ? folder : "PRIVATE";
}

function showLogin(base) {
  const form = $("#login-form");
  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#login-error").textContent = "";
    const username = $("#username").value;
    const password = $("#password").value;
    // §3: the "new" flow when loginConfig answers 200, the form-post "old" flow otherwise.
    const config = await request(joinPath(base, "api/loginConfig"));
    if (config.status !== 200) {
      await request(joinPath(base, "dhis-web-commons-security/login.action"), {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ j_username: username, j_password: password }).toString(),
      });
      location.reload();
      return;
    }
    const login = await request(joinPath(base, "api/auth/login"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (login.status === 200 && !login.problem && isObject(login.body)) {
      location.reload();
      return;
    }
    const message = isObject(login.body) && login.body.message ? login.body.message : login.problem;
    $("#login-error").textContent = `Could not log in: ${message || `status ${login.status}`}`;
  });
  setState("login");
}

function renderInbox(folder, list, unread) {
  $("#folder").textContent = folder;
  $("#folder-unread").textContent = unread ? String(unread.pager.total) : "";
  const inbox = $("#inbox");
  inbox.replaceChildren();
  const seen = new Set(); // the app de-duplicates rows by id and does not sort them
  for (const conversation of list ? list.messageConversations || [] : []) {
    if (seen.has(conversation.id)) continue;
    seen.add(conversation.id);
    const item = document.createElement("li");
    item.className = "conversation";
    item.dataset.id = conversation.id;
    item.dataset.read = String(conversation.read);
    item.dataset.sender = conversation.lastSender ? conversation.lastSender.displayName : "";
    item.textContent = conversation.subject;
    inbox.append(item);
  }
  $("#inbox-section").hidden = false;
}

async function main() {
  const base = resolveBaseUrl();
  const logout = $("#logout");
  logout.href = joinPath(base, "dhis-web-commons-security/logout.action");

  // §3: the unversioned probe; any non-200 or non-JSON answer means "not signed in".
  const info = await request(joinPath(base, "api/system/info"));
  if (info.status !== 200 || !isObject(info.body)) {
    showLogin(base);
    return;
  }
  const minor = apiVersion(info.body.version);
  if (minor === undefined) {
    reportError(info.url, info.status, `no API version in "${info.body.version}"`);
    setState("error");
    return;
  }
  const api = (resource) => joinPath(base, "api", String(minor), resource);

  // §4 step 3: locale and latest-user check; the real app shows a full-screen error without them.
  const [userSettings, meId] = await Promise.all([
    getJson(api("userSettings")),
    getJson(api("me?fields=id"), (me) => (typeof me.id === "string" ? null : "no id")),
  ]);
  if (!userSettings || !meId) {
    setState("error");
    return;
  }

  // Step 4: the header bar's combined query; step 5: the logo, where a 404 is fine.
  const [title, , me, , dashboard] = await Promise.all([
    getJson(api("systemSettings/applicationTitle")),
    getJson(api("systemSettings/helpPageLink")),
    getJson(api("me?fields=authorities,avatar,email,name,settings"), (body) =>
      isObject(body.settings) ? null : "settings is not an object",
    ),
    getJson(joinPath(base, "dhis-web-commons/menu/getModules.action"), (body) =>
      Array.isArray(body.modules) ? null : "modules is not an array",
    ),
    getJson(api("me/dashboard"), (body) =>
      Number.isInteger(body.unreadMessageConversations) ? null : "no unreadMessageConversations",
    ),
  ]);
  const logo = await request(api("staticContent/logo_banner"));
  if (logo.status !== 200 && logo.status !== 404) reportError(logo.url, logo.status, logo.problem);

  // Step 6: the app's own user query.
  const user = await getJson(api("me?fields=id,authorities,userGroups%5Bid%5D"), (body) =>
    Array.isArray(body.authorities) && Array.isArray(body.userGroups) ? null : "no authorities or userGroups",
  );
  if (!user) {
    setState("error");
    return;
  }

  // Steps 7-8: configuration, the folder's list, the clock-skew probe, then the unread count.
  const folder = currentFolder();
  const listQuery =
    `messageConversations?filter=messageType%3Aeq%3A${folder}&pageSize=35&page=1` +
    `&fields=${LIST_FIELDS}&order=lastMessage%3Adesc`;
  const [, list] = await Promise.all([
    getJson(api("configuration"), (body) =>
      isObject(body.feedbackRecipients) && body.feedbackRecipients.id ? null : "no feedbackRecipients.id",
    ),
    getJson(api(listQuery), (body) =>
      hasPager(body) || (Array.isArray(body.messageConversations) ? null : "no messageConversations"),
    ),
    getJson(api("system/info"), (body) => (body.serverDate ? null : "no serverDate")),
  ]);
  const unread = await getJson(
    api(
      `messageConversations?fields=read&filter=read%3Aeq%3Afalse` +
        `&filter=messageType%3Aeq%3A${folder}&pageSize=1`,
    ),
    hasPager,
  );

  if (title && title.applicationTitle) $("#app-title").textContent = title.applicationTitle;
  if (me) $("#user-name").textContent = me.name || "";
  if (dashboard) $("#unread").textContent = String(dashboard.unreadMessageConversations);
  logout.hidden = false;
  renderInbox(folder, list, unread);
  setState("ready");
}

main().catch((error) => {
  reportError(location.href, "script", String(error));
  setState("error");
});
