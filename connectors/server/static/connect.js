// Progressive enhancement of the Connect page: show the Kustomer roles of the ticked operations live.
// The page works without it (Continue shows the same roles, computed by the server).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=operations][data-roles]"));
  var list = document.getElementById("roles-live");
  var count = document.getElementById("roles-live-count");
  if (!list || boxes.length === 0) { return; }
  function update() {
    var roles = {};
    boxes.forEach(function (box) {
      if (!box.checked) { return; }
      box.getAttribute("data-roles").split(" ").forEach(function (role) { if (role) { roles[role] = true; } });
    });
    var names = Object.keys(roles).sort();
    while (list.firstChild) { list.removeChild(list.firstChild); }
    names.forEach(function (name) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = name;
      item.appendChild(code);
      list.appendChild(item);
    });
    if (count) { count.textContent = String(names.length); }
  }
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  update();
});
