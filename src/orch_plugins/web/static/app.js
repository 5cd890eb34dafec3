// orch web: one server-sent-events stream per tab (see docs/web.md); actions go through htmx,
// which sends the token header set on <body hx-headers>.
(function () {
  "use strict";
  var live = document.getElementById("live");
  function flash(text, bad) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "bad" : "good";
  }
  document.body.addEventListener("htmx:afterRequest", function (e) {
    var xhr = e.detail.xhr;
    var body = {};
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
    if (xhr.status >= 400) {
      flash("orch: error: " + (body.error || xhr.status), true);
    } else if (body.result) {
      var r = Array.isArray(body.result) ? body.result : [body.result];
      flash(r.map(function (x) { return x.name + ": " + x.status; }).join(", "), false);
      var form = e.detail.elt;
      if (form && form.tagName === "FORM") form.reset();
      if (form && form.id === "resume" && body.result.run_id) {
        window.location.href = "/agents/" + body.result.run_id;
      }
    }
  });
  // Elapsed times tick in the page: the server sends a row only when its data changes.
  function fmt(s) {
    if (s < 120) return Math.round(s) + "s";
    if (s < 7200) return Math.round(s / 60) + "m";
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h + "h" + (m < 10 ? "0" : "") + m + "m";
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("td[data-since]").forEach(function (td) {
      if (td.dataset.until || !td.dataset.since) return;
      td.textContent = fmt(Math.max(0, now - parseFloat(td.dataset.since)));
    });
  }
  tick();  // rows may have been rendered a while ago: their times are set here
  setInterval(tick, 1000);

  function connect(url, handlers) {
    var es = new EventSource(url);
    es.onopen = function () { if (live) live.className = "live on"; };
    es.onerror = function () { if (live) live.className = "live off"; };
    Object.keys(handlers).forEach(function (name) {
      es.addEventListener(name, function (e) { handlers[name](e.data, es); });
    });
    return es;
  }
  function fromHTML(html) {
    var t = document.createElement("tbody");
    t.innerHTML = html;
    return t.firstElementChild;
  }

  var table = document.getElementById("agents");
  if (table) {
    var tbody = table.tBodies[0];
    connect(table.dataset.stream, {
      row: function (d) {
        var msg = JSON.parse(d);
        var fresh = fromHTML(msg.html);
        var old = document.getElementById("agent-" + msg.name);
        if (old) { old.replaceWith(fresh); } else { tbody.appendChild(fresh); }
        htmx.process(fresh);
        document.getElementById("empty").hidden = true;
      },
      remove: function (d) {
        var old = document.getElementById("agent-" + JSON.parse(d).name);
        if (old) old.remove();
      },
      summary: function (d) { document.getElementById("summary").innerHTML = d; }
    });
  }

  var log = document.getElementById("log");
  if (log && log.dataset.final !== "yes") {
    connect(log.dataset.stream, {
      log: function (d) {
        var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.appendChild(document.createTextNode(d));
        if (atEnd) log.scrollTop = log.scrollHeight;
      },
      status: function (d) {
        var msg = JSON.parse(d);
        var st = document.getElementById("status");
        st.textContent = msg.status;
        st.className = "status st-" + msg.status;
        document.getElementById("error").textContent = msg.error && msg.status !== "completed" ? msg.error : "";
        var cancel = document.getElementById("cancel");
        if (cancel) cancel.hidden = msg.final;
        var resume = document.getElementById("resume");
        if (resume && msg.final) resume.hidden = false;
      },
      output: function (d) { if (d) document.getElementById("output").innerHTML = d; },
      end: function (d, es) {
        es.close();
        log.dataset.final = "yes";
        // The facts, timeline and lineage as recorded at the end: read once from the page.
        fetch(window.location.href, { credentials: "same-origin" })
          .then(function (r) { return r.text(); })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            ["facts", "timeline", "lineage"].forEach(function (id) {
              var fresh = doc.getElementById(id), old = document.getElementById(id);
              if (fresh && old) old.replaceWith(fresh);
            });
          });
      }
    });
  }
})();
