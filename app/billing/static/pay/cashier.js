/* H5 cashier: choose a bill or type an amount, confirm, pay in the wallet (JSAPI), then let the
   server confirm. The wallet's "ok" is never trusted: it only asks the server to query (PAY-07). */
(function () {
  'use strict';

  var root = document.getElementById('cashier');
  if (!root) { return; }
  var payUrl = root.getAttribute('data-pay-url');
  var wallet = root.getAttribute('data-wallet');
  var billLink = root.getAttribute('data-mode') === 'bill';  /* /pay/o/<token>: the URL names the bill */
  var choose = document.getElementById('choose');
  var confirmBox = document.getElementById('confirm');
  var payButton = document.getElementById('pay');
  var statusBox = document.getElementById('status');
  var selection = null;
  var idempotencyKey = null;

  function say(text, isError) {
    statusBox.textContent = text || '';
    statusBox.className = isError ? 'status error' : 'status';
  }

  function newKey() {
    var random = '';
    if (window.crypto && window.crypto.getRandomValues) {
      var bytes = new Uint8Array(12);
      window.crypto.getRandomValues(bytes);
      for (var i = 0; i < bytes.length; i += 1) { random += ('0' + bytes[i].toString(16)).slice(-2); }
    } else {
      random = Math.random().toString(16).slice(2) + Math.random().toString(16).slice(2);
    }
    return 'h5-' + Date.now().toString(36) + '-' + random;
  }

  /* "12.3" -> 1230 fen, exactly (no floating point on the money path). */
  function yuanToFen(text) {
    var match = /^(\d{1,7})(?:\.(\d{1,2}))?$/.exec((text || '').trim());
    if (!match) { return null; }
    var cents = (match[2] || '');
    while (cents.length < 2) { cents += '0'; }
    return parseInt(match[1], 10) * 100 + parseInt(cents, 10);
  }

  function fenText(fen) {
    var cents = String(fen % 100);
    return '¥' + Math.floor(fen / 100) + '.' + (cents.length < 2 ? '0' + cents : cents);
  }

  function showConfirm(body, amountText, subject) {
    selection = body;
    idempotencyKey = newKey();
    document.getElementById('confirm-amount').textContent = amountText;
    document.getElementById('confirm-subject').textContent = subject || '';
    choose.hidden = true;
    confirmBox.hidden = false;
    payButton.disabled = false;
    say('');
  }

  function backToChoose() {
    confirmBox.hidden = true;
    choose.hidden = false;
    selection = null;
    say('');
  }

  var bills = root.querySelectorAll('button.bill');
  Array.prototype.forEach.call(bills, function (button) {
    button.addEventListener('click', function () {
      showConfirm(billLink ? {} : { bill: button.getAttribute('data-bill') }, button.getAttribute('data-amount'),
        button.getAttribute('data-subject'));
    });
  });

  var next = document.getElementById('next');
  if (next) {
    next.addEventListener('click', function () {
      var fen = yuanToFen(document.getElementById('amount').value);
      if (fen === null || fen < 1) {
        say('请输入正确的金额，例如 12.50', true);
        return;
      }
      showConfirm({ amount_fen: fen }, fenText(fen), '自助付款');
    });
  }
  document.getElementById('back').addEventListener('click', backToChoose);

  if (bills.length === 1 && !next) {
    bills[0].click();
  }

  function postJson(url, body, headers) {
    var allHeaders = { 'Content-Type': 'application/json', 'Accept': 'application/json' };
    Object.keys(headers || {}).forEach(function (k) { allHeaders[k] = headers[k]; });
    return fetch(url, {
      method: 'POST', credentials: 'same-origin', headers: allHeaders, body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  function afterWallet(order, outcome) {
    if (outcome === 'cancel') {
      say('您已取消支付。如需付款，请再次点击“确认支付”。', false);
      payButton.disabled = false;
      return;
    }
    if (outcome === 'fail') {
      say('支付未成功，请稍后重试或到收费窗口付款。', true);
      payButton.disabled = false;
      return;
    }
    say('正在确认支付结果…');
    /* Only a server-side query can mark the order paid; then the result page shows it. */
    postJson('/pay/api/orders/' + encodeURIComponent(order.order) + '/confirm', {})
      .catch(function () { return null; })
      .then(function () { window.location.href = order.result_url; });
  }

  function payInWeChat(order) {
    function invoke() {
      window.WeixinJSBridge.invoke('getBrandWCPayRequest', order.client_params, function (res) {
        var message = (res && res.err_msg) || '';
        if (/:ok$/.test(message)) { afterWallet(order, 'ok'); }
        else if (/:cancel$/.test(message)) { afterWallet(order, 'cancel'); }
        else { afterWallet(order, 'fail'); }
      });
    }
    if (window.WeixinJSBridge && window.WeixinJSBridge.invoke) { invoke(); }
    else { document.addEventListener('WeixinJSBridgeReady', invoke, false); }
  }

  function payInAlipay(order) {
    function call() {
      window.AlipayJSBridge.call('tradePay', { tradeNO: order.client_params.tradeNO }, function (result) {
        var code = String((result && result.resultCode) || '');
        if (code === '9000' || code === '8000' || code === '6004') { afterWallet(order, 'ok'); }
        else if (code === '6001') { afterWallet(order, 'cancel'); }
        else { afterWallet(order, 'fail'); }
      });
    }
    if (window.AlipayJSBridge && window.AlipayJSBridge.call) { call(); }
    else { document.addEventListener('AlipayJSBridgeReady', call, false); }
  }

  payButton.addEventListener('click', function () {
    if (!selection) { return; }
    payButton.disabled = true;
    say('正在发起支付…');
    postJson(payUrl, selection, { 'Idempotency-Key': idempotencyKey })
      .then(function (reply) {
        if (!reply.ok) {
          say((reply.data && reply.data.message) || '发起支付失败，请稍后重试', true);
          payButton.disabled = reply.status === 409;
          return;
        }
        var order = reply.data;
        if (order.final && !order.paid) {
          say(order.message || '支付失败，请更换付款方式或到收费窗口付款', true);
          return;
        }
        if (order.paid || !order.client_params || Object.keys(order.client_params).length === 0) {
          window.location.href = order.result_url;
          return;
        }
        if (wallet === 'alipay') { payInAlipay(order); } else { payInWeChat(order); }
      })
      .catch(function () {
        say('网络异常，请检查网络后再次点击“确认支付”（不会重复扣款）', true);
        payButton.disabled = false;
      });
  });
}());
