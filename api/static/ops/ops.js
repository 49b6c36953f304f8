// Herald's operations dashboard: polls /api/ops/* every few seconds and redraws in place.
// Plain JavaScript, no build step, no dependencies. Every figure comes from the server.
(function () {
  "use strict";

  const body = document.body;
  const root = body.dataset.root || "";
  const params = new URLSearchParams(location.search);
  const refreshMs = Math.max(500, Number(params.get("refresh") || 3) * 1000);
  const COLOURS = { email: "#1565c0", sms: "#c2185b" };
  const RETRYABLE = new Set(["FAILED", "DEAD", "UNKNOWN"]);
  const $ = (selector) => document.querySelector(selector);
  const selected = new Set();
  const expanded = new Set();
  let timer = null;
  let pageSize = 50;

  function show(state) {
    body.dataset.state = state;
    $("#login-section").hidden = state !== "login";
    $("#forbidden").hidden = state !== "forbidden";
    $("#dashboard").hidden = state !== "dashboard";
  }

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    init.headers = Object.assign({ Accept: "application/json", "X-Requested-With": "XMLHttpRequest" }, init.headers);
    const response = await fetch(root + path, init);
    if (response.status === 401) { stop(); show("login"); throw new Error("not logged in"); }
    if (response.status === 403) { stop(); show("forbidden"); throw new Error("forbidden"); }
    return response;
  }

  async function json(path) {
    const response = await api(path);
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }
  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso.endsWith("Z") ? iso : iso + "Z");
    const delta = (date.getTime() - Date.now()) / 1000;
    const rel = Math.abs(delta) < 86400 ? (delta >= 0 ? "in " + age(delta) : age(-delta) + " ago") : date.toLocaleString();
    return rel;
  }
  function cell(text, numeric) { return el("td", { text: String(text), class: numeric ? "num" : null }); }

  // --- overview --------------------------------------------------------------------------

  function drawOverview(data) {
    $("#broker").textContent = "broker: " + data.broker;
    const latency = data.latencyS || {};
    const channels = $("#channels tbody");
    channels.replaceChildren(...data.channels.map((c) => {
      const l = latency[c.channel];
      const lat = l ? [l.p50, l.p90, l.p99].map((s) => s.toFixed(2) + " s").join(" / ") : "–";
      return el("tr", { "data-channel": c.channel }, [
        cell(c.channel), cell(fmt(c.waiting), true), cell(age(c.oldestWaitingAgeS), true), cell(fmt(c.inProgress), true),
        cell(fmt(c.retrying), true), cell(when(c.nextAttemptAt)), cell(fmt(c.dead), true), cell(fmt(c.unknown), true),
        cell(fmt(c.sentLastHour), true), cell(fmt(c.deliveredLastHour), true), cell(lat),
      ]);
    }));
    $("#queues tbody").replaceChildren(...data.queues.map((q) => {
      const b = q.broker;
      const brokerText = !b ? (data.broker === "in-process" ? "in-process" : "–")
        : b.error ? b.error : fmt(b.waiting) + " / " + fmt(b.inProgress);
      return el("tr", { "data-queue": q.queue }, [
        cell(q.queue), cell(fmt(q.waiting), true), cell(fmt(q.inProgress), true), cell(fmt(q.retrying), true),
        cell(when(q.nextAttemptAt)), cell(age(q.oldestWaitingAgeS), true), cell(brokerText),
      ]);
    }));
    const fanouts = $("#fanouts");
    if (!data.fanOuts.length) {
      fanouts.replaceChildren(el("li", { class: "muted", text: "none" }));
    } else {
      fanouts.replaceChildren(...data.fanOuts.map((f) => {
        const of = f.audience === null ? "?" : fmt(f.audience);
        const bar = el("progress", { max: String(f.audience || 1), value: String(f.expanded) });
        return el("li", {}, [
          el("div", { text: (f.subject || f.conversation || "event " + f.eventId) + ": expanded " + fmt(f.expanded) + " of " + of }),
          bar,
        ]);
      }));
    }
  }

  // --- throughput chart (inline SVG) -----------------------------------------------------

  function drawThroughput(data) {
    const width = 720, height = 180, pad = 28;
    const now = Date.now();
    const start = now - data.hours * 3600 * 1000;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    let max = 1;
    for (const points of Object.values(data.series)) for (const [, n] of points) max = Math.max(max, n);
    const x = (t) => pad + ((t - start) / (now - start)) * (width - pad - 4);
    const y = (n) => height - 16 - (n / max) * (height - 28);
    const axis = document.createElementNS(svgNS, "path");
    axis.setAttribute("d", `M${pad} 8 V${height - 16} H${width - 4}`);
    axis.setAttribute("stroke", "#9aa5b1"); axis.setAttribute("fill", "none");
    svg.append(axis);
    const label = (text, lx, ly, anchor) => {
      const t = document.createElementNS(svgNS, "text");
      t.setAttribute("x", lx); t.setAttribute("y", ly); t.setAttribute("font-size", "10");
      t.setAttribute("fill", "#5b6875"); t.setAttribute("text-anchor", anchor || "start");
      t.textContent = text; svg.append(t);
    };
    label(fmt(max), pad - 3, 14, "end"); label("0", pad - 3, height - 16, "end");
    label(data.hours + " h ago", pad, height - 3); label("now", width - 4, height - 3, "end");
    const legend = [];
    for (const [channel, points] of Object.entries(data.series)) {
      const colour = COLOURS[channel] || "#555";
      // One bar per minute with sends: honest about gaps, cheap to draw for 1,440 minutes.
      const path = points.map(([iso, n]) => {
        const px = x(new Date(iso).getTime()).toFixed(1);
        return `M${px} ${height - 16} V${y(n).toFixed(1)}`;
      }).join(" ");
      const line = document.createElementNS(svgNS, "path");
      line.setAttribute("d", path || "M0 0");
      line.setAttribute("stroke", colour); line.setAttribute("stroke-width", "2"); line.setAttribute("opacity", "0.8");
      line.setAttribute("data-channel", channel);
      svg.append(line);
      const total = points.reduce((sum, [, n]) => sum + n, 0);
      legend.push(el("span", {}, [el("i", { style: "background:" + colour }), channel + ": " + fmt(total) + " in " + data.hours + " h"]));
    }
    $("#throughput-chart").replaceChildren(svg);
    $("#throughput-legend").replaceChildren(...(legend.length ? legend : [el("span", { class: "muted", text: "nothing sent yet" })]));
  }

  // --- workers (GET /api/ops/workers, from the observability side) -------------------------

  async function drawWorkers() {
    const box = $("#workers");
    try {
      const response = await api("/api/ops/workers");
      if (response.status !== 200) throw new Error("no data");
      const data = await response.json();
      const workers = data.workers || [];
      if (!workers.length) { box.replaceChildren(el("p", { class: "muted", text: "no worker running" })); return; }
      const rows = workers.map((w) => el("tr", { class: w.fresh ? "" : "worker-stale" }, [
        cell(w.hostname + ":" + w.pid), cell(w.kind || ""), cell((w.queues || []).join(", ")),
        cell(when(w.lastSeen) + (w.fresh ? "" : " (stale)")), cell(when(w.startedAt)),
        cell((w.current || []).map((c) => (typeof c === "string" ? c : JSON.stringify(c))).join("; ") || "idle"),
      ]));
      const table = el("table", { id: "workers-table" }, [
        el("thead", {}, [el("tr", {}, ["Worker", "Kind", "Queues", "Heartbeat", "Started", "Doing"].map((h) => el("th", { text: h })))]),
        el("tbody", {}, rows),
      ]);
      box.replaceChildren(el("div", { class: "scroll" }, [table]));
    } catch (error) {
      if (body.dataset.state === "dashboard") box.replaceChildren(el("p", { class: "muted", text: "no worker data" }));
    }
  }

  // --- deliveries --------------------------------------------------------------------------

  function filterQuery() {
    const form = new FormData($("#filters"));
    const query = {};
    for (const [key, value] of form.entries()) {
      const text = String(value).trim();
      if (!text) continue;
      query[key] = key === "from" || key === "to" ? new Date(text).toISOString() : text;
    }
    return query;
  }

  function historyRow(d) {
    const items = (d.attemptHistory || []).map((a) => el("li", {
      text: `#${a.attempt} ${a.outcome} ${when(a.finishedAt)}` + (a.errorCode ? ` ${a.errorCode}` : "") +
        (a.providerAnswer ? `: ${a.providerAnswer}` : "") + (a.providerId ? ` (${a.providerId})` : ""),
    }));
    return el("tr", { class: "history", "data-history": String(d.id) }, [
      el("td", { colspan: "9" }, [items.length ? el("ol", {}, items) : el("span", { class: "muted", text: "no attempt yet" })]),
    ]);
  }

  function deliveryRows(list) {
    const rows = [];
    for (const d of list) {
      const box = el("input", { type: "checkbox", "aria-label": "select " + d.id, "data-id": String(d.id) });
      box.checked = selected.has(d.id);
      box.disabled = !RETRYABLE.has(d.status);
      box.addEventListener("click", (event) => {
        event.stopPropagation();
        if (box.checked) selected.add(d.id); else selected.delete(d.id);
        updateButtons();
      });
      const row = el("tr", { class: "delivery", "data-id": String(d.id), "data-status": d.status }, [
        el("td", {}, [box]), cell(d.id, true), cell(d.channel),
        el("td", { class: "status status-" + d.status, text: d.status }),
        cell((d.user && d.user.username ? d.user.username + " " : "") + "<" + (d.address || "-") + ">"),
        cell(d.attempts, true), cell(d.nextAttemptAt ? when(d.nextAttemptAt) : "–"),
        el("td", { class: "error-text", text: d.lastErrorCode ? d.lastErrorCode + ": " + (d.lastError || "") : "" }),
        cell(when(d.created)),
      ]);
      row.addEventListener("click", () => {
        if (expanded.has(d.id)) expanded.delete(d.id); else expanded.add(d.id);
        refreshDeliveries();
      });
      rows.push(row);
      if (expanded.has(d.id)) rows.push(historyRow(d));
    }
    return rows;
  }

  let lastPage = null;
  async function refreshDeliveries() {
    const query = new URLSearchParams(filterQuery());
    query.set("pageSize", String(pageSize));
    query.set("total", "true");
    const data = await json("/api/ops/deliveries?" + query.toString());
    lastPage = data;
    $("#deliveries tbody").replaceChildren(...deliveryRows(data.deliveries));
    $("#matching").textContent = fmt(data.total) + " matching";
    $("#more").hidden = !data.next;
    updateButtons();
  }

  function updateButtons() {
    $("#retry-selected").disabled = selected.size === 0;
    $("#discard-selected").disabled = selected.size === 0;
  }

  async function act(action, payload) {
    const response = await api("/api/ops/deliveries/" + action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    });
    const answer = await response.json();
    $("#action-result").textContent = answer.message || ("HTTP " + response.status);
    selected.clear();
    await refreshDeliveries();
  }

  function matchingPayload() {
    const query = filterQuery();
    return { query: query.status ? query : Object.assign(query, { status: ["FAILED", "DEAD", "UNKNOWN"] }) };
  }

  // --- polling -----------------------------------------------------------------------------

  async function refresh() {
    try {
      const [overviewData, throughputData] = await Promise.all([json("/api/ops/overview"), json("/api/ops/throughput")]);
      drawOverview(overviewData);
      drawThroughput(throughputData);
      await Promise.all([refreshDeliveries(), drawWorkers()]);
      $("#refreshed").textContent = "updated " + new Date().toLocaleTimeString();
      body.dataset.refreshed = String(Date.now());
    } catch (error) {
      if (body.dataset.state === "dashboard") $("#refreshed").textContent = "refresh failed: " + error.message;
    }
  }

  function start() {
    show("dashboard");
    stop();
    refresh();
    timer = setInterval(refresh, refreshMs);
  }
  function stop() { if (timer !== null) { clearInterval(timer); timer = null; } }

  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(root + "/api/auth/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-Requested-With": "XMLHttpRequest" },
      body: JSON.stringify({ username: $("#username").value, password: $("#password").value }),
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      $("#login-error").textContent = answer.message || "Login failed";
      return;
    }
    location.reload();  // the server decides: dashboard, or 403 for a user without ALL
  });
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); pageSize = 50; selected.clear(); refreshDeliveries(); });
  $("#retry-selected").addEventListener("click", () => act("retry", { ids: [...selected] }));
  $("#discard-selected").addEventListener("click", () => act("discard", { ids: [...selected] }));
  $("#retry-matching").addEventListener("click", () => act("retry", matchingPayload()));
  $("#discard-matching").addEventListener("click", () => {
    if (confirm("Discard every FAILED, DEAD and UNKNOWN delivery matching the filter?")) act("discard", matchingPayload());
  });
  $("#select-all").addEventListener("change", (event) => {
    for (const d of (lastPage ? lastPage.deliveries : [])) {
      if (!RETRYABLE.has(d.status)) continue;
      if (event.target.checked) selected.add(d.id); else selected.delete(d.id);
    }
    refreshDeliveries();
  });
  $("#more").addEventListener("click", () => { pageSize = Math.min(pageSize + 50, 500); refreshDeliveries(); });

  if (body.dataset.state === "dashboard") start(); else show(body.dataset.state);
})();
