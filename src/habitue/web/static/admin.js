// Draws the dashboard charts from the JSON the page carries (no inline script: strict CSP).
(function () {
  var node = document.getElementById("chart-data");
  if (!node || !window.Chart) return;
  var data = JSON.parse(node.textContent);
  var colours = ["#1d4e89", "#2e7d32", "#b0381e"];
  function paint(sets) {
    sets.forEach(function (s, i) { s.backgroundColor = colours[i % 3]; s.borderColor = colours[i % 3]; });
    return sets;
  }
  new Chart(document.getElementById("chart-members"), {
    type: "line",
    data: { labels: data.members.labels, datasets: paint(data.members.datasets) },
    options: { animation: false, responsive: true, plugins: { legend: { display: false } } }
  });
  new Chart(document.getElementById("chart-points"), {
    type: "bar",
    data: { labels: data.points.labels, datasets: paint(data.points.datasets) },
    options: { animation: false, responsive: true }
  });
  // Sizes by category; the canvas is absent (an empty-state message instead) without data.
  ["segments", "tiers"].forEach(function (name) {
    var canvas = document.getElementById("chart-" + name);
    if (!canvas || !data[name] || !data[name].labels.length) return;
    new Chart(canvas, {
      type: "bar",
      data: { labels: data[name].labels, datasets: paint(data[name].datasets) },
      options: { animation: false, responsive: true, plugins: { legend: { display: false } } }
    });
  });
})();
