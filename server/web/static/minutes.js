// The 会议记录 page: a file larger than the server accepts is caught before it is sent, with the
// reason next to the field. (The server refuses it too, but a body far over the limit is cut off
// before any page could answer, and the upload would seem to do nothing.)
(function () {
  "use strict";

  function megabytes(bytes, roundUp) {
    var tenths = bytes / (1024 * 1024) * 10;
    // A file's size is rounded up, so a file just over the limit never reads as equal to it.
    return String((roundUp ? Math.ceil(tenths) : Math.round(tenths)) / 10);
  }

  function messageFor(form) {
    var message = form.querySelector(".upload-error");
    if (!message) {
      message = document.createElement("p");
      message.className = "field-error upload-error";
      message.setAttribute("role", "alert");
      message.id = "upload-error";
      form.appendChild(message);
    }
    return message;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-max-bytes]")) { return; }
    var input = form.querySelector('input[type="file"]');
    var file = input && input.files && input.files[0];
    var limit = Number(form.getAttribute("data-max-bytes"));
    var old = form.querySelector(".upload-error");
    if (old) { old.remove(); }
    if (input) { input.removeAttribute("aria-invalid"); input.removeAttribute("aria-describedby"); }
    if (!file || !limit || file.size <= limit) { return; }
    // Captured before htmx sees the submit: nothing is sent.
    event.preventDefault();
    event.stopImmediatePropagation();
    var message = messageFor(form);
    message.textContent = "「" + file.name + "」有 " + megabytes(file.size, true) + " MB，每个附件不能超过 " +
      megabytes(limit, false) + " MB。请压缩照片，或把扫描件分成几页后再上传。";
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", message.id);
    input.focus();
  }, true);
})();
