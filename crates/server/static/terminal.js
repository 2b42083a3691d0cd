// drydock's browser terminal: xterm.js on the workspace terminal WebSocket. Keystrokes go
// as binary frames, the shell's output comes back as binary frames, and a text frame
// {"type": "resize", "cols", "rows"} follows the window's size; the shell's exit code comes
// in the close frame.
(function () {
  var el = document.getElementById("terminal");
  if (!el) return;
  var term = new Terminal({ cursorBlink: true, convertEol: false });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var url = scheme + "//" + location.host + el.dataset.url + "&cols=" + term.cols + "&rows=" + term.rows;
  var socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  var encoder = new TextEncoder();
  socket.onopen = function () { el.dataset.state = "open"; term.focus(); };
  socket.onmessage = function (event) {
    term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
  };
  // When the shell ends, the close frame's reason carries {"exitCode": N}.
  socket.onclose = function (event) {
    el.dataset.state = "closed";
    var exit = null;
    try { exit = JSON.parse(event.reason || "null"); } catch (e) { exit = null; }
    if (exit && typeof exit.exitCode === "number") {
      el.dataset.exitCode = String(exit.exitCode);
      term.write("\r\n[the shell exited with code " + exit.exitCode + "]\r\n");
    } else {
      term.write("\r\n[the terminal is closed]\r\n");
    }
  };
  term.onData(function (data) {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  window.addEventListener("resize", function () {
    fit.fit();
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  });
})();
