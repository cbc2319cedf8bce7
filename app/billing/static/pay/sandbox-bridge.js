/* Payment sandbox only (PAYMENT_SANDBOX): stands in for the WeChat and Alipay in-app JS bridges in an
   ordinary browser, so the H5 cashier can be tried by hand. "Paying" asks the in-process emulator
   (/_sandbox/jsapi-pay) to play the payer; the page then confirms with the server as usual. */
(function () {
  'use strict';
  function pay(channel, reference) {
    return fetch('/_sandbox/jsapi-pay', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: channel, reference: reference })
    }).then(function (response) { return response.ok; }).catch(function () { return false; });
  }
  if (!window.WeixinJSBridge) {
    window.WeixinJSBridge = {
      invoke: function (name, params, callback) {
        var reference = String((params && params['package']) || '').replace(/^prepay_id=/, '');
        if (!window.confirm('【支付沙箱】模拟微信支付：确认付款？')) {
          callback({ err_msg: 'get_brand_wcpay_request:cancel' });
          return;
        }
        pay('wechat', reference).then(function (ok) {
          callback({ err_msg: ok ? 'get_brand_wcpay_request:ok' : 'get_brand_wcpay_request:fail' });
        });
      }
    };
  }
  if (!window.AlipayJSBridge) {
    window.AlipayJSBridge = {
      call: function (name, params, callback) {
        if (!window.confirm('【支付沙箱】模拟支付宝支付：确认付款？')) {
          callback({ resultCode: '6001' });
          return;
        }
        pay('alipay', String((params && params.tradeNO) || '')).then(function (ok) {
          callback({ resultCode: ok ? '9000' : '4000' });
        });
      }
    };
  }
}());
