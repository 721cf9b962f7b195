// The tidemark docs site: one page, routed by the URL's #fragment, drawn from window.TIDEMARK
// (assets/data.js) and window.TIDEMARK_METRICS (assets/metric_<name>.js). No library, no network.
(function () {
  "use strict";
  var D = window.TIDEMARK || { nodes: [], metric_models: [], project: "" };
  var byId = new Map();
  var children = new Map();
  D.nodes.forEach(function (n) { byId.set(n.id, n); children.set(n.id, []); });
  D.nodes.forEach(function (n) {
    n.depends_on.forEach(function (p) { if (children.has(p)) children.get(p).push(n.id); });
  });
  var page = document.getElementById("page");
  var COLORS = ["#1f6feb", "#d9822b", "#2d8a4e", "#c93c37", "#8250df", "#0e8a9c", "#b08800", "#e34f9d", "#6e7781", "#54aeff"];
  var TYPE_COLORS = { model: "#1f6feb", seed: "#2d8a4e", source: "#0e8a9c", snapshot: "#8250df", test: "#6e7781" };

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function nodeHref(id) { return "#/node/" + encodeURIComponent(id); }
  function link(id) {
    var n = byId.get(id);
    return n ? '<a href="' + nodeHref(id) + '">' + esc(n.name) + '</a> <span class="pill">' + n.resource_type + "</span>" : esc(id);
  }
  function num(v) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v !== "number") return esc(v);
    return Math.abs(v) >= 1000 || Number.isInteger(v) ? v.toLocaleString("en") : String(Math.round(v * 1000) / 1000);
  }
  function bytes(v) {
    if (v === null || v === undefined) return "";
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + " " + units[i];
  }
  function statusClass(s) { return "status-" + String(s || "").toLowerCase(); }

  // ---- selection: tidemark's selector syntax, on the graph in the page -----------------------
  function walk(start, next, depth) {
    var seen = new Set(), frontier = [start], level = 0;
    while (frontier.length && (depth === null || level < depth)) {
      var following = [];
      frontier.forEach(function (id) {
        (next(id) || []).forEach(function (o) { if (!seen.has(o)) { seen.add(o); following.push(o); } });
      });
      frontier = following; level++;
    }
    return seen;
  }
  function parents(id) { var n = byId.get(id); return n ? n.depends_on : []; }
  function kids(id) { return children.get(id) || []; }
  function wildcard(pattern) {
    return new RegExp("^" + pattern.split("*").map(function (p) { return p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"); }).join(".*") + "$");
  }
  function matches(n, method, value) {
    var re = wildcard(value);
    switch (method) {
      case "tag": return n.tags.some(function (t) { return re.test(t); });
      case "resource_type": return re.test(n.resource_type);
      case "path": return n.path === value || n.path.indexOf(value.replace(/\/$/, "") + "/") === 0 || re.test(n.path);
      case "package": return re.test(n.package || "");
      case "config.materialized": return re.test(n.materialized);
      case "fqn": return re.test(n.fqn.join("."));
      default: return re.test(n.name) || re.test(n.fqn.join(".")) || re.test(n.fqn.slice(1).join(".")) || n.id === value;
    }
  }
  function selectTerm(term) {
    var at = term[0] === "@";
    if (at) term = term.slice(1);
    var up = /^(\d*)\+/.exec(term), down = /\+(\d*)$/.exec(term);
    if (up) term = term.slice(up[0].length);
    if (down) term = term.slice(0, term.length - down[0].length);
    var colon = term.indexOf(":"), method = colon > 0 ? term.slice(0, colon) : "", value = colon > 0 ? term.slice(colon + 1) : term;
    var out = new Set();
    D.nodes.forEach(function (n) {
      if (!matches(n, method, value)) return;
      out.add(n.id);
      if (up) walk(n.id, parents, up[1] ? +up[1] : null).forEach(function (x) { out.add(x); });
      if (down || at) walk(n.id, kids, down && down[1] ? +down[1] : null).forEach(function (x) { out.add(x); });
    });
    if (at) Array.from(out).forEach(function (id) { walk(id, parents, null).forEach(function (x) { out.add(x); }); });
    return out;
  }
  function select(expression) {
    var result = new Set();
    expression.trim().split(/\s+/).filter(Boolean).forEach(function (union) {
      var parts = union.split(",").map(selectTerm);
      parts[0].forEach(function (id) {
        if (parts.every(function (p) { return p.has(id); })) result.add(id);
      });
    });
    return result;
  }

  // ---- SVG helpers ---------------------------------------------------------------------------
  function svg(width, height, body) {
    return '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '" viewBox="0 0 ' + width + " " + height + '">' + body + "</svg>";
  }
  function shade(t) {
    var c = Math.max(0, Math.min(1, t));
    return "rgb(" + Math.round(240 - 200 * c) + "," + Math.round(246 - 140 * c) + "," + Math.round(252 - 20 * c) + ")";
  }
  function legend(names) {
    return '<div class="legend">' + names.map(function (name, i) {
      return '<span><i style="background:' + COLORS[i % COLORS.length] + '"></i>' + esc(name) + "</span>";
    }).join("") + "</div>";
  }
  function axisLabels(periods, x0, step, y) {
    var every = Math.max(1, Math.ceil(periods.length / 12)), out = "";
    periods.forEach(function (p, i) {
      if (i % every === 0) out += '<text x="' + (x0 + i * step) + '" y="' + y + '" font-size="10">' + esc(p.slice(5)) + "</text>";
    });
    return out;
  }

  // ---- pages -------------------------------------------------------------------------------------
  function overview(query) {
    var counts = {};
    D.nodes.forEach(function (n) { counts[n.resource_type] = (counts[n.resource_type] || 0) + 1; });
    var q = (query || "").toLowerCase();
    var rows = D.nodes.filter(function (n) {
      if (!q) return n.resource_type !== "test";
      return n.name.toLowerCase().indexOf(q) >= 0 || (n.description || "").toLowerCase().indexOf(q) >= 0 ||
        n.columns.some(function (c) { return c.name.toLowerCase().indexOf(q) >= 0; });
    });
    var html = "<h1>" + esc(D.project) + "</h1>";
    html += '<p class="muted">Generated ' + esc(D.generated_at) + " by tidemark " + esc(D.tidemark_version) + "</p>";
    html += '<div class="cards">' + ["model", "source", "seed", "snapshot", "test"].map(function (t) {
      return '<div class="card"><b>' + (counts[t] || 0) + "</b>" + t + "s</div>";
    }).join("") + '<div class="card"><b>' + D.metric_models.length + '</b><a href="#/metrics">metric models</a></div></div>';
    html += "<h2>" + (q ? "Nodes matching “" + esc(query) + "”" : "Sources, models, seeds and snapshots") + " (" + rows.length + ")</h2>";
    html += '<table id="nodes"><tr><th>name</th><th>type</th><th>materialized</th><th>rows</th><th>description</th><th>path</th></tr>';
    rows.forEach(function (n) {
      html += "<tr><td>" + link(n.id) + "</td><td>" + n.resource_type + "</td><td>" + esc(n.materialized) + '</td><td class="num">' + num(n.rows) +
        "</td><td>" + esc((n.description || "").slice(0, 160)) + '</td><td class="muted">' + esc(n.path) + "</td></tr>";
    });
    return html + "</table>";
  }

  function testsOf(id) {
    return D.nodes.filter(function (t) {
      return t.resource_type === "test" && (t.tests_node === id || (!t.tests_node && t.depends_on.indexOf(id) >= 0));
    });
  }

  function nodePage(id) {
    var n = byId.get(id);
    if (!n) return "<h1>Not found</h1><p>" + esc(id) + "</p>";
    var html = "<h1>" + esc(n.name) + ' <span class="pill">' + n.resource_type + "</span></h1>";
    html += '<p class="muted">' + esc(n.id) + " · " + esc(n.path) + (n.line ? ":" + n.line : "") + "</p>";
    if (n.metric_model) html += '<p>Generated by metric model <a href="#/metric/' + encodeURIComponent(n.metric_model) + '">' + esc(n.metric_model) + "</a>.</p>";
    if (n.description) html += '<div class="description">' + esc(n.description).replace(/\n/g, "<br>") + "</div>";
    html += '<div class="cards">';
    html += '<div class="card"><b>' + esc(n.materialized) + "</b>materialized</div>";
    if (n.relation) html += '<div class="card"><b>' + esc(n.relation) + "</b>relation</div>";
    if (n.rows !== null && n.rows !== undefined) html += '<div class="card"><b>' + num(n.rows) + "</b>rows</div>";
    if (n.bytes !== null && n.bytes !== undefined) html += '<div class="card"><b>' + bytes(n.bytes) + "</b>on disk</div>";
    if (n.last_run) {
      html += '<div class="card"><b class="' + statusClass(n.last_run.status) + '">' + esc(n.last_run.status) + "</b>last build " +
        esc(n.last_run.completed_at || "") + (n.last_run.seconds !== undefined ? " (" + num(n.last_run.seconds) + " s)" : "") + "</div>";
    }
    html += "</div>";
    if (n.tags.length) html += "<p>Tags: " + n.tags.map(function (t) { return '<span class="pill">' + esc(t) + "</span>"; }).join("") + "</p>";
    if (n.columns.length) {
      html += '<h2>Columns</h2><table id="columns"><tr><th>#</th><th>column</th><th>type</th><th>description</th><th>fed by</th></tr>';
      n.columns.forEach(function (c, i) {
        var fed = c.lineage.length ? '<a href="#/column/' + encodeURIComponent(n.id) + "/" + encodeURIComponent(c.name) + '">' + c.lineage.length + " column" + (c.lineage.length > 1 ? "s" : "") + "</a>" : "";
        html += '<tr><td class="num">' + (i + 1) + "</td><td>" + esc(c.name) + "</td><td>" + esc(c.type) + "</td><td>" + esc(c.description) + "</td><td>" + fed + "</td></tr>";
      });
      html += "</table>";
    }
    var tests = testsOf(id);
    if (tests.length) {
      html += '<h2>Tests</h2><table id="tests"><tr><th>test</th><th>column</th><th>last result</th><th>failing rows</th></tr>';
      tests.forEach(function (t) {
        var r = t.last_run || {};
        html += "<tr><td>" + link(t.id) + "</td><td>" + esc(t.tests_column || "") + '</td><td class="' + statusClass(r.status) + '">' + esc(r.status || "not run") + '</td><td class="num">' + num(r.failures) + "</td></tr>";
      });
      html += "</table>";
    }
    if (n.last_run && n.last_run.error) html += "<h2>Last error</h2><pre>" + esc(n.last_run.error) + "</pre>";
    html += '<h2>Lineage</h2><p><a href="#/lineage?select=' + encodeURIComponent("+" + n.name + "+") + '">Graph of +' + esc(n.name) + "+</a></p>";
    html += "<h3>Upstream</h3>" + (n.depends_on.length ? "<ul>" + n.depends_on.map(function (p) { return "<li>" + link(p) + "</li>"; }).join("") + "</ul>" : '<p class="muted">none</p>');
    var down = kids(id);
    html += "<h3>Downstream</h3>" + (down.length ? "<ul>" + down.map(function (c) { return "<li>" + link(c) + "</li>"; }).join("") + "</ul>" : '<p class="muted">none</p>');
    if (n.raw_sql) html += "<h2>SQL as written</h2><pre>" + esc(n.raw_sql) + "</pre>";
    if (n.compiled_sql) html += "<h2>Compiled SQL</h2><pre>" + esc(n.compiled_sql) + "</pre>";
    return html;
  }

  function columnPage(id, column) {
    var n = byId.get(id);
    if (!n) return "<h1>Not found</h1>";
    function fedBy(nodeId, col) {
      var node = byId.get(nodeId);
      if (!node) return [];
      var c = node.columns.find(function (x) { return x.name === col; });
      return c ? c.lineage : [];
    }
    function split(ref) { var dot = ref.lastIndexOf("."); return [ref.slice(0, dot), ref.slice(dot + 1)]; }
    var roots = new Set(), seen = new Set();
    function tree(nodeId, col, depth) {
      var key = nodeId + "." + col;
      var upstream = fedBy(nodeId, col);
      var label = (byId.get(nodeId) ? link(nodeId) : esc(nodeId)) + " · <b>" + esc(col) + "</b>";
      if (seen.has(key) || depth > 40) return "<li>" + label + " …</li>";
      seen.add(key);
      if (!upstream.length) { if (depth > 0) roots.add(key); return "<li>" + label + "</li>"; }
      return "<li>" + label + "<ul>" + upstream.map(function (ref) { var p = split(ref); return tree(p[0], p[1], depth + 1); }).join("") + "</ul></li>";
    }
    var body = tree(id, column, 0);
    var html = "<h1>" + esc(n.name) + "." + esc(column) + "</h1><p>Column lineage from the logical plans of the compiled SQL: each column with the columns that feed it, down to sources and seeds.</p>";
    html += "<h2>Fed, in the end, by</h2><ul id=\"roots\">" + Array.from(roots).sort().map(function (key) {
      var p = split(key);
      return "<li>" + link(p[0]) + " · <b>" + esc(p[1]) + "</b></li>";
    }).join("") + "</ul><h2>Through</h2><ul>" + body + "</ul>";
    return html;
  }

  function layout(ids) {
    var set = new Set(ids), layer = new Map();
    var order = D.nodes.map(function (n) { return n.id; }).filter(function (id) { return set.has(id); });
    order.forEach(function (id) {
      var l = 0;
      parents(id).forEach(function (p) { if (layer.has(p)) l = Math.max(l, layer.get(p) + 1); });
      layer.set(id, l);
    });
    var layers = [];
    order.forEach(function (id) { var l = layer.get(id); (layers[l] = layers[l] || []).push(id); });
    var position = new Map();
    layers.forEach(function (ids, l) {
      if (l > 0) {
        ids.sort(function (a, b) {
          function bary(id) {
            var ps = parents(id).filter(function (p) { return position.has(p); });
            return ps.length ? ps.reduce(function (s, p) { return s + position.get(p); }, 0) / ps.length : 0;
          }
          return bary(a) - bary(b);
        });
      }
      ids.forEach(function (id, i) { position.set(id, i); });
    });
    return { layers: layers, layer: layer, position: position };
  }

  function lineagePage(params) {
    var expression = params.get("select") || "resource_type:model resource_type:source resource_type:seed resource_type:snapshot";
    var ids = Array.from(select(expression)).filter(function (id) { return byId.get(id).resource_type !== "test"; });
    var html = "<h1>Lineage</h1>";
    html += '<form class="selector" id="selector"><label>--select</label><input name="select" value="' + esc(expression) + '"><button>Show</button><span class="muted">' + ids.length + " nodes · e.g. <code>+learner_engagement</code>, <code>stg_events+</code>, <code>@stg_learners</code>, <code>tag:metric_model</code></span></form>";
    if (!ids.length) return html + "<p>No node matches.</p>";
    var longest = Math.max.apply(null, ids.map(function (id) { return Math.min(48, byId.get(id).name.length); }));
    var g = layout(ids), W = Math.max(140, Math.round(longest * 6.6 + 16)), H = 26, GAP = 60;
    var width = g.layers.length * (W + GAP) + 20;
    var height = Math.max.apply(null, g.layers.map(function (l) { return l.length; })) * (H + 10) + 20;
    var at = function (id) { return [10 + g.layer.get(id) * (W + GAP), 10 + g.position.get(id) * (H + 10)]; };
    var edges = "", boxes = "";
    ids.forEach(function (id) {
      var to = at(id);
      parents(id).forEach(function (p) {
        if (!g.layer.has(p)) return;
        var from = at(p), x1 = from[0] + W, y1 = from[1] + H / 2, x2 = to[0], y2 = to[1] + H / 2;
        edges += '<path d="M' + x1 + "," + y1 + " C" + (x1 + GAP / 2) + "," + y1 + " " + (x2 - GAP / 2) + "," + y2 + " " + x2 + "," + y2 + '" fill="none" stroke="#9aa6b2"/>';
      });
      var n = byId.get(id);
      boxes += '<a href="' + nodeHref(id) + '"><g class="node" data-id="' + esc(id) + '"><rect x="' + to[0] + '" y="' + to[1] + '" width="' + W + '" height="' + H + '" rx="4" fill="#fff" stroke="' + (TYPE_COLORS[n.resource_type] || "#333") + '" stroke-width="1.5"/>' +
        '<text x="' + (to[0] + 6) + '" y="' + (to[1] + 17) + '">' + esc(n.name.length > 48 ? n.name.slice(0, 47) + "…" : n.name) + "</text><title>" + esc(n.id) + "</title></g></a>";
    });
    html += '<div class="graph">' + svg(width, height, edges + boxes) + "</div>";
    return html;
  }

  // ---- metric models ---------------------------------------------------------------------------
  function metricsPage() {
    var html = "<h1>Metric models</h1><table><tr><th>metric model</th><th>entity</th><th>cohort</th><th>measures</th><th>alerts</th><th>file</th></tr>";
    D.metric_models.forEach(function (m) {
      var s = m.spec;
      html += '<tr><td><a href="#/metric/' + encodeURIComponent(m.name) + '">' + esc(m.name) + "</a></td><td>" + esc(s.events.entity) + "</td><td>" + esc(s.cohort || "") +
        '</td><td class="num">' + s.measures.length + '</td><td class="num">' + s.alerts.length + '</td><td class="muted">' + esc(m.file) + "</td></tr>";
    });
    return html + "</table>";
  }

  function ruleInWords(a) {
    var parts = [];
    if (a.when) parts.push("fires when <code>" + esc(a.when) + "</code>");
    if (a.control_chart) {
      var c = a.control_chart;
      parts.push("fires when <code>" + esc(c.metric) + "</code> is below its mean − " + (c.sigma || 3) + "σ over the previous " + (c.periods || 8) + " periods" +
        (c.run_below ? ", or " + c.run_below + " periods in a row below the mean" : ""));
    }
    if (a.ewma) parts.push("fires when the EWMA (λ " + (a.ewma.lambda || 0.2) + ") of <code>" + esc(a.ewma.metric) + "</code>, standardised against the entity's own " + (a.ewma.periods || 8) + " periods, is below −" + (a.ewma.L || 3) + " control limits");
    if (a.cusum) parts.push("fires when the lower CUSUM (k " + (a.cusum.k || 0.5) + ") of <code>" + esc(a.cusum.metric) + "</code>, standardised against the entity's own " + (a.cusum.periods || 8) + " periods" + (a.cusum.skip ? " before the last " + a.cusum.skip : "") + ", passes h = " + (a.cusum.h || 4));
    if (a.for && a.for > 1) parts.push("for " + a.for + " consecutive periods");
    if (a.min_sample) parts.push("judged only where <code>" + esc(a.min_sample) + "</code>");
    if (a.threshold) parts.push("threshold <code>" + esc(a.threshold) + "</code>");
    var text = parts.join(", ") + ".";
    if (a.severity && a.severity.length) {
      text += " Severity: " + a.severity.map(function (t) { return "<b>" + t.level + "</b>" + (t.when ? " when <code>" + esc(t.when) + "</code>" : " otherwise"); }).join("; ") + ".";
    }
    var who = [];
    if (a.owner) who.push("owner <b>" + esc(a.owner) + "</b>");
    if (a.escalate) who.push("escalates to " + esc(a.escalate.to) + " after " + a.escalate.after + " periods");
    if (a.gate) who.push("gates CI at " + esc(a.gate));
    if (a.resolve_after) who.push("resolves after " + a.resolve_after + " periods out of breach");
    if (a.active_from !== null && a.active_from !== undefined) who.push("judged from " + esc(a.active_from));
    if (a.notify && a.notify.length) who.push("notifies " + a.notify.length + " target" + (a.notify.length > 1 ? "s" : ""));
    if (who.length) text += " " + who.join("; ") + ".";
    if (a.reason) text += '<br><span class="muted">Reason: ' + esc(a.reason) + "</span>";
    return text;
  }

  function weights(score) {
    var items = [];
    if (score.families) {
      Object.keys(score.families).forEach(function (f) {
        var members = score.components.filter(function (c) { return c.family === f; }).map(function (c) { return c.metric; });
        items.push([f, score.families[f], members.join(", ")]);
      });
    } else {
      score.components.forEach(function (c) { items.push([c.metric, c.weight, c.direction || ""]); });
    }
    var breakdown = items.map(function (i) { return Math.round(i[1] * 100); }).join("/");
    return "<p><b>" + esc(score.name) + "</b>: " + breakdown + " (" + items.map(function (i) { return esc(i[0]); }).join(" / ") + ")</p><table>" + items.map(function (i, k) {
      return "<tr><td>" + esc(i[0]) + '</td><td class="num">' + Math.round(i[1] * 1000) / 10 + '%</td><td><span class="bar" style="width:' + Math.round(i[1] * 300) + "px;background:" + COLORS[k % COLORS.length] + '"></span></td><td class="muted">' + esc(i[2]) + "</td></tr>";
    }).join("") + "</table>";
  }

  function metricPage(name) {
    var m = D.metric_models.find(function (x) { return x.name === name; });
    if (!m) return "<h1>Not found</h1>";
    var s = m.spec;
    var html = "<h1>" + esc(s.name) + ' <span class="pill">metric model</span></h1><p class="muted">' + esc(m.file) + "</p>";
    if (s.description) html += "<p>" + esc(s.description) + "</p>";
    var periods = s.periods.every ? "every " + s.periods.every + " from " + esc(s.periods.start || "") + " to " + esc(s.periods.end || "") : "as of " + esc(s.periods.as_of || "");
    html += '<div class="cards"><div class="card"><b>' + esc(s.events.entity) + "</b>entity</div>" + (s.cohort ? '<div class="card"><b>' + esc(s.cohort) + "</b>cohort</div>" : "") +
      '<div class="card"><b>' + periods + '</b>periods (each named by its last day)</div><div class="card"><b>' + s.windows.join(" / ") + "</b>days per window</div></div>";
    html += "<p>Events: " + esc(s.events.model) + " (time <code>" + esc(s.events.time) + "</code>)" + (s.dimension ? "; dimension " + esc(s.dimension.model) : "") + (s.incremental ? "; incremental" : "") + "</p>";
    html += "<h2>Measures</h2><table><tr><th>measure</th><th>aggregation</th><th>windows</th><th>of</th></tr>" + s.measures.map(function (x) {
      return "<tr><td>" + esc(x.name) + "</td><td>" + esc(x.agg) + "</td><td>" + (x.windows || s.windows).join(", ") + "</td><td><code>" + esc(x.expr || "") + "</code>" + (x.filter ? " where <code>" + esc(x.filter) + "</code>" : "") + "</td></tr>";
    }).join("") + "</table>";
    if (s.comparisons.length) {
      html += "<h2>Comparisons</h2><table><tr><th>comparison</th><th>metric</th><th>against</th><th>as</th><th>details</th></tr>" + s.comparisons.map(function (c) {
        var d = [];
        if (c.periods) d.push(c.periods + " periods"); if (c.skip) d.push("skip " + c.skip); if (c.sigma_floor) d.push("σ ≥ " + c.sigma_floor); if (c.exclude_when) d.push("excluding " + esc(c.exclude_when));
        return "<tr><td>" + esc(c.name) + "</td><td>" + esc(c.metric) + "</td><td>" + esc(c.against) + "</td><td>" + esc(c.as || "") + "</td><td>" + d.join("; ") + "</td></tr>";
      }).join("") + "</table>";
    }
    if (s.normalize.length) html += "<h2>Normalisations</h2><ul>" + s.normalize.map(function (x) { return "<li>" + esc(x.metric) + ": " + esc(x.method) + " within " + esc(x.within) + "</li>"; }).join("") + "</ul>";
    if (s.shrink.length) html += "<h2>Shrinkage</h2><ul>" + s.shrink.map(function (x) { return "<li>" + esc(x.measure) + " (" + x.window + " days) toward " + esc(x.toward) + ", strength " + x.strength + "</li>"; }).join("") + "</ul>";
    if (s.scores.length) html += "<h2>Scores</h2>" + s.scores.map(weights).join("");
    if (s.alerts.length) html += "<h2>Alert rules</h2>" + s.alerts.map(function (a) { return '<div class="rule"><b>' + esc(a.name) + "</b>: " + ruleInWords(a) + "</div>"; }).join("");
    if (s.interventions && s.interventions.length) {
      html += "<h2>Interventions</h2><ul>" + s.interventions.map(function (i) {
        return "<li><b>" + esc(i.name) + "</b>: outcome " + esc(i.outcome) + ", from " + esc(i.start || "each entity's start") + ", " + i.pre_periods + " periods before against " + i.post_periods + " after" + (i.randomize ? ", arms drawn with seed " + i.randomize.seed : "") + "</li>";
      }).join("") + "</ul>";
    }
    html += "<h2>Generated models</h2><ul>" + m.nodes.map(function (id) { return "<li>" + link(id) + "</li>"; }).join("") + "</ul>";
    var scorecard = D.nodes.find(function (n) { return n.name === s.name && n.resource_type === "model"; });
    if (scorecard && scorecard.compiled_sql) html += "<details><summary>Generated SQL of the scorecard</summary><pre>" + esc(scorecard.compiled_sql) + "</pre></details>";
    html += '<h2>Charts</h2><div id="charts" data-metric="' + esc(name) + '"><p class="muted">Loading the materialised tables…</p></div>';
    return html;
  }

  function loadCharts(name) {
    var target = document.getElementById("charts");
    function draw() {
      var data = (window.TIDEMARK_METRICS || {})[name];
      target.innerHTML = data ? charts(name, data) : '<p class="muted">No chart data: build the metric model, then run docs generate again.</p>';
      var pick = document.getElementById("entity");
      if (pick) pick.addEventListener("change", function () { document.getElementById("drill").innerHTML = drill(name, data, pick.value); });
    }
    if ((window.TIDEMARK_METRICS || {})[name]) return draw();
    var script = document.createElement("script");
    script.src = "assets/metric_" + name + ".js";
    script.onload = draw;
    script.onerror = draw;
    document.body.appendChild(script);
  }

  function heatmap(h) {
    var cohorts = Array.from(new Set(h.rows.map(function (r) { return r.cohort; }))).sort();
    var periods = Array.from(new Set(h.rows.map(function (r) { return r.period_end; }))).sort();
    var values = h.rows.map(function (r) { return r.value; }).filter(function (v) { return v !== null; });
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var cw = Math.max(8, Math.min(28, Math.floor(900 / periods.length))), ch = Math.max(6, Math.min(16, Math.floor(600 / cohorts.length))), left = 80;
    var body = "";
    h.rows.forEach(function (r) {
      var x = left + periods.indexOf(r.period_end) * cw, y = 10 + cohorts.indexOf(r.cohort) * ch;
      body += '<rect class="cell" x="' + x + '" y="' + y + '" width="' + cw + '" height="' + ch + '" fill="' + (r.value === null ? "#eee" : shade((r.value - lo) / ((hi - lo) || 1))) + '"><title>' + esc(r.cohort) + " · " + r.period_end + ": " + num(r.value) + " (" + r.entities + ")</title></rect>";
    });
    var every = Math.max(1, Math.ceil(cohorts.length / 40));
    cohorts.forEach(function (c, i) { if (i % every === 0) body += '<text x="2" y="' + (10 + i * ch + ch - 2) + '" font-size="10">' + esc(c) + "</text>"; });
    body += axisLabels(periods, left, cw, 24 + cohorts.length * ch);
    return '<div class="chart" id="heatmap"><h3>' + esc(h.cohort) + " × period: mean " + esc(h.metric) + ' <span class="muted">(' + num(lo) + " … " + num(hi) + ")</span></h3>" +
      svg(left + periods.length * cw + 10, 34 + cohorts.length * ch, body) + "</div>";
  }

  function stacked(id, title, rows, key, keys) {
    var periods = Array.from(new Set(rows.map(function (r) { return r.period_end; }))).sort();
    var totals = {}, max = 1;
    rows.forEach(function (r) { totals[r.period_end] = (totals[r.period_end] || 0) + r.alerts; });
    periods.forEach(function (p) { max = Math.max(max, totals[p]); });
    var bw = Math.max(6, Math.min(30, Math.floor(900 / periods.length))), H = 180, left = 40, body = "";
    periods.forEach(function (p, i) {
      var y = 10 + H;
      keys.forEach(function (k, j) {
        var v = rows.filter(function (r) { return r.period_end === p && r[key] === k; }).reduce(function (s, r) { return s + r.alerts; }, 0);
        if (!v) return;
        var h = v / max * H; y -= h;
        body += '<rect class="segment" x="' + (left + i * bw) + '" y="' + y + '" width="' + (bw - 2) + '" height="' + h + '" fill="' + COLORS[j % COLORS.length] + '"><title>' + p + " · " + esc(k || "none") + ": " + v + "</title></rect>";
      });
    });
    body += '<text x="2" y="16" font-size="10">' + max + '</text><text x="2" y="' + (H + 10) + '" font-size="10">0</text>' + axisLabels(periods, left, bw, H + 24);
    return '<div class="chart" id="' + id + '"><h3>' + title + "</h3>" + legend(keys.map(function (k) { return k || "no severity"; })) + svg(left + periods.length * bw + 10, H + 30, body) + "</div>";
  }

  function distribution(d) {
    var all = [];
    d.periods.forEach(function (p) { all.push(p.q[0], p.q[6]); });
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), H = 180, left = 40;
    var bw = Math.max(8, Math.min(30, Math.floor(900 / d.periods.length)));
    var y = function (v) { return 10 + H - (v - lo) / ((hi - lo) || 1) * H; }, body = "";
    d.periods.forEach(function (p, i) {
      var x = left + i * bw + bw / 2, q = p.q;
      body += '<g class="box"><line x1="' + x + '" x2="' + x + '" y1="' + y(q[1]) + '" y2="' + y(q[5]) + '" stroke="#555"/>' +
        '<rect x="' + (x - bw / 3) + '" y="' + y(q[4]) + '" width="' + (2 * bw / 3) + '" height="' + Math.max(1, y(q[2]) - y(q[4])) + '" fill="#cfe0fb" stroke="#1f6feb"/>' +
        '<line x1="' + (x - bw / 3) + '" x2="' + (x + bw / 3) + '" y1="' + y(q[3]) + '" y2="' + y(q[3]) + '" stroke="#1d2733" stroke-width="2"/>' +
        "<title>" + p.period_end + ": median " + num(q[3]) + ", quartiles " + num(q[2]) + "–" + num(q[4]) + ", 10–90% " + num(q[1]) + "–" + num(q[5]) + " (" + p.n + ")</title></g>";
    });
    body += '<text x="2" y="16" font-size="10">' + num(hi) + '</text><text x="2" y="' + (H + 10) + '" font-size="10">' + num(lo) + "</text>" + axisLabels(d.periods.map(function (p) { return p.period_end; }), left, bw, H + 24);
    return '<div class="chart distribution"><h3>Distribution of ' + esc(d.score) + " per period (10th–90th percentile, quartiles, median)</h3>" + svg(left + d.periods.length * bw + 10, H + 30, body) + "</div>";
  }

  function drill(name, data, entity) {
    var dd = data.drill_down, rows = dd.entities[entity];
    if (!rows) return '<p class="muted">No rows for ' + esc(entity) + ".</p>";
    var spec = D.metric_models.find(function (x) { return x.name === name; }).spec;
    var periods = Object.keys(rows).sort(), breaches = (data.breaches || {})[entity] || [];
    var col = function (c) { return dd.columns.indexOf(c); };
    var html = "";
    dd.series.forEach(function (s) {
      var vi = col(s.rule_value), ri = s.reference ? col(s.reference) : -1, si = s.sigma ? col(s.sigma) : -1;
      var rules = spec.alerts.filter(function (a) { return [a.value, (a.control_chart || {}).metric, (a.ewma || {}).metric, (a.cusum || {}).metric].indexOf(s.rule_value) >= 0; }).map(function (a) { return a.name; });
      var values = [];
      periods.forEach(function (p) {
        var r = rows[p];
        [r[vi], ri >= 0 ? r[ri] : null].forEach(function (v) { if (v !== null && v !== undefined) values.push(v); });
        if (ri >= 0 && si >= 0 && r[ri] !== null && r[si] !== null) values.push(r[ri] - 3 * r[si], r[ri] + 3 * r[si]);
      });
      if (!values.length) return;
      var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values), H = 150, left = 50, step = Math.max(10, Math.min(34, Math.floor(900 / periods.length)));
      var x = function (i) { return left + i * step; }, y = function (v) { return 10 + H - (v - lo) / ((hi - lo) || 1) * H; };
      var body = "", line = "", base = "", band = [], bandBack = [];
      periods.forEach(function (p, i) {
        var r = rows[p];
        if (r[vi] !== null) line += (line ? " L" : "M") + x(i) + "," + y(r[vi]);
        if (ri >= 0 && r[ri] !== null) {
          base += (base ? " L" : "M") + x(i) + "," + y(r[ri]);
          if (si >= 0 && r[si] !== null) { band.push(x(i) + "," + y(r[ri] + 3 * r[si])); bandBack.unshift(x(i) + "," + y(r[ri] - 3 * r[si])); }
        }
      });
      if (band.length) body += '<polygon class="limits" points="' + band.concat(bandBack).join(" ") + '" fill="#eef4ff" stroke="none"><title>baseline ± 3σ (control limits)</title></polygon>';
      if (base) body += '<path class="baseline" d="' + base + '" fill="none" stroke="#8a96a3" stroke-dasharray="4 3"><title>baseline</title></path>';
      body += '<path class="value" d="' + line + '" fill="none" stroke="#1f6feb" stroke-width="2"/>';
      periods.forEach(function (p, i) {
        var r = rows[p];
        var hit = breaches.filter(function (b) { return b[0] === p && rules.indexOf(b[1]) >= 0; });
        if (r[vi] === null) return;
        body += '<circle class="' + (hit.length ? "breach" : "point") + '" cx="' + x(i) + '" cy="' + y(r[vi]) + '" r="' + (hit.length ? 5 : 2.5) + '" fill="' + (hit.length ? "#c93c37" : "#1f6feb") + '"><title>' + p + ": " + num(r[vi]) +
          (hit.length ? " — in breach: " + hit.map(function (b) { return b[1] + (b[2] ? " (" + b[2] + ")" : ""); }).join(", ") : "") + "</title></circle>";
      });
      body += '<text x="2" y="16" font-size="10">' + num(hi) + '</text><text x="2" y="' + (H + 10) + '" font-size="10">' + num(lo) + "</text>" + axisLabels(periods, left, step, H + 24);
      html += '<div class="chart"><h3>' + esc(s.rule_value) + ' <span class="muted">(' + esc(rules.join(", ")) + ")</span></h3>" + svg(left + periods.length * step + 10, H + 30, body) + "</div>";
    });
    return html || '<p class="muted">No series.</p>';
  }

  function charts(name, data) {
    var html = "";
    if (data.heatmap) html += heatmap(data.heatmap);
    if (data.alerts && data.alerts.length) {
      var rules = Array.from(new Set(data.alerts.map(function (r) { return r.rule; }))).sort();
      var severities = ["high", "medium", "low", ""].filter(function (s) { return data.alerts.some(function (r) { return r.severity === s; }); });
      html += stacked("alerts-by-rule", "Alerts per period by rule", data.alerts, "rule", rules);
      html += stacked("alerts-by-severity", "Alerts per period by severity", data.alerts, "severity", severities);
    }
    if (data.cases && data.cases.length) {
      html += '<div class="chart" id="cases"><h3>Cases by status</h3><table><tr><th>rule</th><th>status</th><th>cases</th><th></th></tr>';
      var most = Math.max.apply(null, data.cases.map(function (c) { return c.cases; }));
      data.cases.forEach(function (c) {
        html += "<tr><td>" + esc(c.rule) + "</td><td>" + esc(c.status) + '</td><td class="num">' + c.cases + '</td><td><span class="bar" style="width:' + Math.max(1, Math.round(c.cases / most * 300)) + 'px"></span></td></tr>';
      });
      html += "</table></div>";
    }
    (data.distributions || []).forEach(function (d) { if (d.periods.length) html += distribution(d); });
    if (data.drill_down) {
      var entities = Object.keys(data.drill_down.entities).sort();
      var flagged = entities.filter(function (e) { return (data.breaches || {})[e]; });
      var first = flagged[0] || entities[0];
      html += '<h3>One entity over time</h3><p><label>Entity <input id="entity" list="entities" value="' + esc(first) + '"></label> <span class="muted">' + flagged.length + " of " + entities.length + " in breach at some period</span></p><datalist id=\"entities\">" +
        entities.map(function (e) { return '<option value="' + esc(e) + '">'; }).join("") + '</datalist><div id="drill">' + drill(name, data, first) + "</div>";
    }
    if (data.problems && data.problems.length) html += '<p class="muted">Not drawn: ' + esc(data.problems.join("; ")) + "</p>";
    return html;
  }

  // ---- routing -----------------------------------------------------------------------------------
  function route() {
    var hash = location.hash.replace(/^#\/?/, ""), q = hash.indexOf("?");
    var path = q >= 0 ? hash.slice(0, q) : hash, params = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
    var parts = path.split("/").map(function (part) {
      try { return decodeURIComponent(part); } catch (e) { return part; }
    });
    var html;
    if (parts[0] === "node") html = nodePage(parts.slice(1).join("/"));
    else if (parts[0] === "column") html = columnPage(parts[1], parts.slice(2).join("/"));
    else if (parts[0] === "lineage") html = lineagePage(params);
    else if (parts[0] === "metrics") html = metricsPage();
    else if (parts[0] === "metric") html = metricPage(parts[1]);
    else html = overview(params.get("q"));
    page.innerHTML = html;
    page.setAttribute("data-route", parts[0] || "overview");
    var form = document.getElementById("selector");
    if (form) form.addEventListener("submit", function (e) { e.preventDefault(); location.hash = "#/lineage?select=" + encodeURIComponent(form.select.value); });
    var known = D.metric_models.some(function (m) { return m.name === parts[1]; });
    if (parts[0] === "metric" && known) loadCharts(parts[1]);
    window.scrollTo(0, 0);
  }
  document.getElementById("project").textContent = D.project;
  var search = document.getElementById("search");
  search.addEventListener("input", function () { location.hash = "#/?q=" + encodeURIComponent(search.value); });
  window.addEventListener("hashchange", route);
  route();
  window.TIDEMARK_SELECT = select;
})();
