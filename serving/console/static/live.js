// The Live screen: uPlot charts fed by the console's Server-Sent Events stream.
(function () {
  "use strict";
  var root = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!root) return;

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  if (typeof uPlot === "undefined") {
    setStatus("error", "The chart library is missing; see the notice above.");
    return;
  }

  var WINDOW = 300; // samples kept on screen (5 minutes at one a second)
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

  function Chart(figure, options) {
    this.figure = figure;
    this.keys = [];
    this.data = [[]];
    this.missing = options.missing; // the value of a series absent from a sample (0 or null)
    var plot = figure.querySelector(".plot");
    this.plot = plot;
    this.u = new uPlot({
      width: Math.max(plot.clientWidth, 280),
      height: 180,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max || 0, options.floor || 1)]; } } },
      axes: [{}, { size: 50 }],
      series: [{}],
      legend: { live: false }
    }, this.data, plot);
  }

  Chart.prototype.push = function (t, values) {
    var self = this;
    Object.keys(values).forEach(function (key) {
      if (self.keys.indexOf(key) === -1 && values[key] !== undefined) {
        self.keys.push(key);
        self.data.push(self.data[0].map(function () { return null; }));
        self.u.addSeries({ label: key, stroke: PALETTE[(self.keys.length - 1) % PALETTE.length], width: 1.5,
                           spanGaps: false, points: { show: false } }, self.keys.length);
      }
    });
    this.data[0].push(t);
    this.keys.forEach(function (key, i) {
      var v = values[key];
      self.data[i + 1].push(v === undefined || v === null ? self.missing : v);
    });
    if (this.data[0].length > WINDOW) {
      this.data.forEach(function (column) { column.shift(); });
    }
    this.u.setData(this.data);
    this.figure.dataset.points = String(this.data[0].length);
  };

  Chart.prototype.resize = function () {
    this.u.setSize({ width: Math.max(this.plot.clientWidth, 280), height: 180 });
  };

  function chart(id, options) { return new Chart(document.getElementById(id), options || {}); }

  var charts = {
    commands: chart("chart-commands", { missing: 0, floor: 1 }),
    latency: chart("chart-latency", { missing: null, floor: 5 }),
    errors: chart("chart-errors", { missing: 0, floor: 1 }),
    lag: chart("chart-lag", { missing: null, floor: 10 }),
    replicas: chart("chart-replicas", { missing: null, floor: 2 })
  };
  var received = 0;

  function pair(a, b) {
    return (a === null || a === undefined ? "-" : a) + " / " + (b === null || b === undefined ? "-" : b);
  }

  function add(sample) {
    var shards = sample.shards || {};
    var errors = {};
    Object.keys(sample.errors_per_s || {}).forEach(function (k) { errors[k] = sample.errors_per_s[k]; });
    Object.keys(shards.errors_per_s || {}).forEach(function (k) { errors["shard " + k] = shards.errors_per_s[k]; });
    var t = sample.t;
    charts.commands.push(t, { "this replica": sample.commands_per_s, "shards": shards.commands_per_s });
    charts.latency.push(t, { "p50 this replica": sample.p50_ms, "p99 this replica": sample.p99_ms,
                             "p50 shards": shards.p50_ms, "p99 shards": shards.p99_ms });
    charts.errors.push(t, errors);
    charts.lag.push(t, sample.lag || {});
    charts.replicas.push(t, sample.replicas || {});
    received += 1;
    document.getElementById("v-commands").textContent = sample.commands_per_s;
    document.getElementById("v-shard-commands").textContent = shards.commands_per_s === undefined ? "-" : shards.commands_per_s;
    document.getElementById("v-latency").textContent = pair(sample.p50_ms, sample.p99_ms);
    document.getElementById("v-shard-latency").textContent = pair(shards.p50_ms, shards.p99_ms);
    var total = Object.keys(errors).reduce(function (sum, k) { return sum + errors[k]; }, 0);
    document.getElementById("v-errors").textContent = String(Math.round(total * 100) / 100);
    document.getElementById("v-samples").textContent = String(received);
  }

  var source = new EventSource(root.dataset.stream);
  source.addEventListener("open", function () { setStatus("live", "live"); });
  source.addEventListener("history", function (event) {
    JSON.parse(event.data).forEach(add);
    setStatus("live", "live");
  });
  source.addEventListener("sample", function (event) {
    add(JSON.parse(event.data));
    setStatus("live", "live");
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      setStatus("closed", "The feed closed (the session may have ended): reload the page to log in again.");
    } else {
      setStatus("connecting", "reconnecting…");
    }
  });
  function resizeAll() { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); }
  // the grid may lay the cards out after this script ran: follow each card's own width
  if (window.ResizeObserver) {
    var observer = new ResizeObserver(resizeAll);
    Object.keys(charts).forEach(function (k) { observer.observe(charts[k].figure); });
  } else {
    window.addEventListener("resize", resizeAll);
  }
  window.addEventListener("pagehide", function () { source.close(); });
})();
