/* Result page: polls the server until the payment is confirmed (or the order ends). Every third
   poll asks the server to query the provider; the page never decides anything by itself. */
(function () {
  'use strict';

  var root = document.getElementById('result');
  if (!root) { return; }
  var statusUrl = root.getAttribute('data-status-url');
  var confirmUrl = root.getAttribute('data-confirm-url');
  var polls = 0;
  var MAX_POLLS = 200;

  function show(id) {
    ['waiting', 'success', 'failure'].forEach(function (name) {
      document.getElementById(name).hidden = name !== id;
    });
  }

  function render(order) {
    if (order.paid) {
      document.getElementById('paid-amount').textContent = order.amount_text;
      document.getElementById('paid-centre').textContent = order.centre_name;
      document.getElementById('paid-subject').textContent = order.subject;
      document.getElementById('paid-time').textContent = order.paid_at || '';
      show('success');
      return true;
    }
    if (order.final) {
      document.getElementById('failure-text').textContent =
        (order.message || order.state_text) + '。如已扣款，款项将原路退回；如有疑问请联系收费处。';
      show('failure');
      return true;
    }
    return false;
  }

  function request() {
    var asServer = polls % 3 === 0;
    return fetch(asServer ? confirmUrl : statusUrl, {
      method: asServer ? 'POST' : 'GET',
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json' }
    }).then(function (response) { return response.json(); });
  }

  function poll() {
    request().then(function (order) {
      polls += 1;
      if (!render(order)) {
        if (polls < MAX_POLLS) { window.setTimeout(poll, 1500); }
        else {
          document.getElementById('status').textContent = '暂未确认到付款结果，请稍后刷新本页或联系收费处，不要重复付款。';
        }
      }
    }).catch(function () {
      polls += 1;
      if (polls < MAX_POLLS) { window.setTimeout(poll, 3000); }
    });
  }

  poll();
}());
