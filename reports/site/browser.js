(function(){
  var t0 = performance.now();
  var rows = window.RNER_SAMPLES || [];
  var per = 50, page = 0;
  var el = function(id){ return document.getElementById(id); };
  function readHash(){
    var h = new URLSearchParams(location.hash.slice(1));
    el('f-dataset').value = h.get('dataset') || '';
    el('f-label').value = h.get('label') || '';
    el('f-kind').value = h.get('kind') || '';
    el('f-failed').checked = h.get('failed') === '1';
    page = Math.max(0, (parseInt(h.get('page') || '1', 10) || 1) - 1);
  }
  function matches(r){
    var d = el('f-dataset').value, l = el('f-label').value, k = el('f-kind').value;
    if (d && r.dataset !== d) return false;
    if (l && r.labels.indexOf(l) < 0) return false;
    if (k && r.kinds.indexOf(k) < 0) return false;
    if (el('f-failed').checked && !r.failed) return false;
    return true;
  }
  function render(){
    var sel = rows.filter(matches);
    var pages = Math.max(1, Math.ceil(sel.length / per));
    if (page >= pages) page = pages - 1;
    var out = [];
    sel.slice(page * per, page * per + per).forEach(function(r){ out.push(r.html); });
    el('samples-list').innerHTML = out.join('');
    el('count').textContent = sel.length + ' sentences';
    el('count').setAttribute('data-n', sel.length);
    el('pageinfo').textContent = 'page ' + (page + 1) + ' of ' + pages;
  }
  function onChange(){ page = 0; render(); }
  ['f-dataset','f-label','f-kind','f-failed'].forEach(function(id){ el(id).addEventListener('change', onChange); });
  el('prev').addEventListener('click', function(){ if (page > 0) { page--; render(); } });
  el('next').addEventListener('click', function(){ page++; render(); });
  window.addEventListener('hashchange', function(){ readHash(); render(); });
  readHash(); render();
  var ms = performance.now(); // since navigation started: data script parsed, first page drawn
  el('loadms').textContent = 'rendered in ' + ms.toFixed(0) + ' ms';
  el('loadms').setAttribute('data-ms', ms.toFixed(1));
})();
