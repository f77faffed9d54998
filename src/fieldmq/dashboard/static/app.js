"use strict";
// fieldmq dashboard: draws a snapshot, then applies updates from /api/events (SSE).
(function () {
  const state = { devices: new Map(), queue: [[], [], []], anomalies: [], selected: null,
                  messages: 0, deviceSeries: {}, charts: {} };
  const $ = (id) => document.getElementById(id);
  const fmtTime = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "–";
  const ago = (t) => { if (!t) return "–"; const s = Math.max(0, Date.now() / 1000 - t);
    return s < 60 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(1) + " min ago"; };

  function chartWidth(el) { return Math.max(280, el.clientWidth || 600); }

  const queueEl = $("queue-chart");
  const queueChart = new uPlot({
    width: chartWidth(queueEl), height: 200,
    series: [{}, { label: "queued", stroke: "#d97706", fill: "rgba(217,119,6,.15)", width: 2 },
             { label: "online", stroke: "#16a34a", width: 1.5, scale: "n" }],
    axes: [{}, { label: "queued" }, { side: 1, scale: "n", label: "online", grid: { show: false } }],
    scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max)] } },
  }, state.queue, queueEl);

  function renderRow(row) {
    let tr = document.querySelector(`tr[data-device="${CSS.escape(row.device)}"]`);
    const tbody = document.querySelector("#fleet tbody");
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.device = row.device;
      tr.addEventListener("click", () => selectDevice(row.device));
      // keep rows sorted by device id
      const after = [...tbody.children].find((r) => r.dataset.device > row.device);
      tbody.insertBefore(tr, after || null);
    }
    const q = row.queue_depth || 0;
    tr.innerHTML = `<td>${row.device}</td><td>${row.profile || ""}</td>` +
      `<td><span class="dot ${row.online ? "on" : "off"}"></span>${row.online ? "online" : "offline"}</td>` +
      `<td data-ts="${row.last_seen || ""}">${ago(row.last_seen)}</td>` +
      `<td class="num ${q > 0 ? "queue-hot" : ""}">${q}</td>` +
      `<td class="num">${row.reconnects || 0}</td><td class="num">${row.messages || 0}</td>`;
    if (row.device === state.selected) tr.classList.add("selected");
  }

  function kpis() {
    let online = 0, queued = 0;
    for (const r of state.devices.values()) { if (r.online) online++; queued += r.queue_depth || 0; }
    $("k-devices").textContent = state.devices.size;
    $("k-online").textContent = online;
    $("k-queued").textContent = queued;
    $("k-messages").textContent = state.messages;
    $("k-anomalies").textContent = state.anomalies.length;
    $("fleet-note").textContent = `${online} of ${state.devices.size} online`;
  }

  function renderAnomaly(a, prepend) {
    const li = document.createElement("li");
    const detail = [a.metric, a.value !== undefined ? "= " + Number(a.value).toFixed(2) : "",
                    a.score !== undefined ? "(score " + Number(a.score).toFixed(1) + ")" : ""].join(" ");
    li.innerHTML = `<span class="when">${fmtTime(a.at || a.ts)}</span>` +
      `<span class="what">${a.device}</span><span>${detail}</span>` +
      (a.detector ? `<span class="tag">${a.detector}</span>` : "");
    const ul = $("anomalies");
    if (prepend) ul.insertBefore(li, ul.firstChild); else ul.appendChild(li);
    while (ul.children.length > 100) ul.removeChild(ul.lastChild);
  }

  function renderAudit(audit) {
    if (!audit) return;
    const tbody = document.querySelector("#audit tbody");
    tbody.innerHTML = "";
    for (const [k, v] of Object.entries(audit)) {
      const tr = document.createElement("tr");
      const cls = k === "lost" ? (v === 0 ? "good" : "bad") : "";
      tr.innerHTML = `<td>${k}</td><td class="${cls}">${typeof v === "object" ? JSON.stringify(v) : v}</td>`;
      tbody.appendChild(tr);
    }
    if (audit.lost !== undefined) {
      $("k-lost").textContent = audit.lost;
      $("k-lost").className = audit.lost === 0 ? "good" : "bad";
    }
  }

  async function selectDevice(device) {
    state.selected = device;
    document.querySelectorAll("#fleet tr.selected").forEach((tr) => tr.classList.remove("selected"));
    const tr = document.querySelector(`tr[data-device="${CSS.escape(device)}"]`);
    if (tr) tr.classList.add("selected");
    $("dev-name").textContent = device;
    const res = await fetch(`/api/device/${encodeURIComponent(device)}`);
    if (!res.ok) return;
    const data = await res.json();
    const box = $("device-charts");
    box.innerHTML = "";
    state.charts = {};
    state.deviceSeries = {};
    for (const [metric, series] of Object.entries(data.series)) {
      const wrap = document.createElement("div");
      wrap.className = "metric";
      wrap.innerHTML = `<div class="metric-name">${metric}</div>`;
      box.appendChild(wrap);
      state.deviceSeries[metric] = [series[0].slice(), series[1].slice()];
      state.charts[metric] = new uPlot({
        width: chartWidth(box), height: 90, legend: { show: false },
        series: [{}, { stroke: "#2563eb", width: 1.5, label: metric }],
        axes: [{ size: 24 }, { size: 44 }], scales: { x: { time: true } },
      }, state.deviceSeries[metric], wrap);
    }
  }

  function applyPoints(u) {
    if (u.device !== state.selected) return;
    for (const [metric, value] of Object.entries(u.values)) {
      const s = state.deviceSeries[metric];
      if (!s) continue;
      s[0].push(u.ts); s[1].push(value);
      if (s[0].length > 600) { s[0].shift(); s[1].shift(); }
      state.charts[metric].setData(s);
    }
  }

  function applySnapshot(snap) {
    if (snap.title) { $("title").textContent = snap.title; document.title = snap.title; }
    state.devices.clear();
    document.querySelector("#fleet tbody").innerHTML = "";
    for (const row of snap.devices) { state.devices.set(row.device, row); renderRow(row); }
    state.queue = [[], [], []];
    for (const [t, depth, online] of snap.queue_history) {
      state.queue[0].push(t); state.queue[1].push(depth); state.queue[2].push(online);
    }
    queueChart.setData(state.queue);
    state.anomalies = snap.anomalies.slice();
    $("anomalies").innerHTML = "";
    for (const a of state.anomalies) renderAnomaly(a, false);
    state.messages = snap.messages || 0;
    renderAudit(snap.audit);
    kpis();
    if (!state.selected && snap.devices.length) selectDevice(snap.devices[0].device);
  }

  function applyUpdates(updates) {
    let fleetChanged = false;
    for (const u of updates) {
      if (u.type === "device") {
        const prev = state.devices.get(u.row.device);
        if (prev) state.messages += (u.row.messages || 0) - (prev.messages || 0);
        else state.messages += u.row.messages || 0;
        state.devices.set(u.row.device, u.row);
        renderRow(u.row);
        if (!state.selected) selectDevice(u.row.device);
      } else if (u.type === "points") {
        applyPoints(u);
      } else if (u.type === "fleet") {
        state.queue[0].push(u.ts); state.queue[1].push(u.queue_depth); state.queue[2].push(u.online);
        if (state.queue[0].length > 3600) state.queue.forEach((a) => a.shift());
        fleetChanged = true;
      } else if (u.type === "anomaly") {
        state.anomalies.unshift(u.anomaly);
        renderAnomaly(u.anomaly, true);
      } else if (u.type === "audit") {
        renderAudit(u.audit);
      }
    }
    if (fleetChanged) queueChart.setData(state.queue);
    kpis();
  }

  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("snapshot", (e) => { applySnapshot(JSON.parse(e.data)); });
    es.addEventListener("updates", (e) => { applyUpdates(JSON.parse(e.data)); });
    es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
    es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn off"; };
  }

  setInterval(() => {
    document.querySelectorAll("td[data-ts]").forEach((td) => {
      const t = parseFloat(td.dataset.ts); if (t) td.textContent = ago(t);
    });
  }, 1000);
  window.addEventListener("resize", () => {
    queueChart.setSize({ width: chartWidth(queueEl), height: 200 });
  });
  connect();
  window.fieldmqDashboard = state;  // for tests and curious users
})();
