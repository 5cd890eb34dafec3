// The cost page's charts (Chart.js, vendored): data from the page's JSON block.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  ["agent", "role", "model", "day"].forEach(function (key) {
    var canvas = document.getElementById("chart-" + key);
    new Chart(canvas, {
      type: "bar",
      data: { labels: data[key].labels, datasets: [{ label: "US$", data: data[key].values, backgroundColor: "#4a7bd0" }] },
      options: { animation: false, plugins: { legend: { display: false } }, indexAxis: key === "day" ? "x" : "y" }
    });
  });
})();
