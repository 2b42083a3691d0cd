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
