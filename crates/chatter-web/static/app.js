// Chatter's own small script: confirmations, the Telegram login callback. Pages work without it.
(function () {
  document.addEventListener("submit", function (e) {
    var f = e.target;
    var msg = f.getAttribute && f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  document.addEventListener("focusin", function (e) {
    if (e.target.classList && e.target.classList.contains("copy")) e.target.select();
  });
})();

// Called by the Telegram Login Widget with the signed user data; posted with our CSRF token.
function chatterTelegramAuth(user) {
  var form = document.getElementById("telegram-form");
  if (!form) return;
  Object.keys(user).forEach(function (k) {
    var i = document.createElement("input");
    i.type = "hidden";
    i.name = k;
    i.value = String(user[k]);
    form.appendChild(i);
  });
  form.submit();
}
