// drydock dashboard behaviour. No inline scripts: the Content-Security-Policy forbids them.
// A dialog loaded into #modal by htmx opens as a modal; forms with method="dialog" close it.
document.addEventListener("htmx:afterSwap", function (event) {
  var target = event.detail.target;
  if (target && target.id === "modal") {
    var dialog = target.querySelector("dialog");
    if (dialog && !dialog.open) {
      dialog.showModal();
      var first = dialog.querySelector("input:not([type=hidden]), button");
      if (first) first.focus();
    }
  }
});

// Live pages: an element with data-events follows that server-sent event stream. Status
// changes and errors reload the fragment named by data-refresh (it listens for "refresh");
// with data-log, every event is also added as a line to that list. The browser reconnects
// by itself, and the stream starts with the current status, so nothing is missed for long.
function followEvents(element) {
  var source = new EventSource(element.dataset.events);
  var log = element.dataset.log ? document.getElementById(element.dataset.log) : null;
  function refresh() {
    var target = document.getElementById(element.dataset.refresh);
    if (target && window.htmx) htmx.trigger(target, "refresh");
  }
  function record(event) {
    if (!log || !event.data) return;
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    var line = document.createElement("li");
    line.className = "event-" + data.kind;
    var time = document.createElement("time");
    time.textContent = (data.time ? new Date(data.time) : new Date()).toLocaleTimeString();
    line.appendChild(time);
    line.appendChild(document.createTextNode(" " + (data.status ? data.status + ": " : "") + data.message));
    log.appendChild(line);
    while (log.children.length > 200) log.removeChild(log.firstChild);
  }
  source.addEventListener("change", refresh);
  source.addEventListener("status", function (event) { record(event); refresh(); });
  source.addEventListener("progress", record);
  source.addEventListener("warning", function (event) { record(event); refresh(); });
  // "error" is also what EventSource fires when the connection drops: that one has no data.
  source.addEventListener("error", function (event) {
    if (event.data) { record(event); refresh(); }
  });
}
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-events]").forEach(followEvents);
});
