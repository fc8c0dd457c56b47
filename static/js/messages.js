// Flash messages float over the page (static/css/app.css): a close button on each; a message
// about a job (class "job-<id>") is removed by static/js/jobs.js when that job ends.
for (const button of document.querySelectorAll('.messages .message-close')) {
  button.addEventListener('click', () => {
    const list = button.closest('.messages');
    button.closest('li').remove();
    if (list && !list.children.length) list.remove();
  });
}
