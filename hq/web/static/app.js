// The pages' only script: one submit per form, and the position asked for only on a tap.
document.querySelectorAll("form[data-once]").forEach(function (f) {
  f.addEventListener("submit", function () {
    f.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
  });
});
document.querySelectorAll("[data-near]").forEach(function (b) {
  if (!navigator.geolocation) return;
  b.hidden = false;
  b.addEventListener("click", function () {
    navigator.geolocation.getCurrentPosition(function (p) {
      var u = new URL(location.href);
      u.searchParams.set("lat", p.coords.latitude.toFixed(4));
      u.searchParams.set("lon", p.coords.longitude.toFixed(4));
      location.replace(u.toString());
    });
  });
});
