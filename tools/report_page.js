// report_page.js - the script of heapwatch report's page (tools/report_html.c
// embeds it, and says what it draws): a section's flame graphs and
// tables are built when it opens, from the data the section carries.
(function(){'use strict';
var NS='http://www.w3.org/2000/svg',ROW=17;
function fb(v){var u=['B','KiB','MiB','GiB','TiB','PiB'],i=0;while(Math.abs(v)>=1024&&i<5){v/=1024;i++;}return i?v.toFixed(Math.abs(v)<10?2:1)+' '+u[i]:Math.round(v)+' B';}
function fc(v){return Math.round(v).toLocaleString('en-US');}
function pct(a,b){return b>0?(100*a/b).toFixed(1)+'%':'-';}
function el(tag,attrs,text){var e=document.createElementNS(NS,tag);for(var k in attrs)e.setAttribute(k,attrs[k]);if(text!=null)e.textContent=text;return e;}
function color(s){var h=0;for(var i=0;i<s.length;i++)h=(h*31+s.charCodeAt(i))>>>0;return 'hsl('+(h%50)+','+(70+h%25)+'%,'+(55+(h>>8)%15)+'%)';}
// tree: the graph's stacks merged, children sorted by bytes
function tree(names,g){var root={name:'all',b:0,o:0,kids:new Map(),up:null,d:0};
 function add(path,b,o){var n=root;root.b+=b;root.o+=o;for(var j=0;j<path.length;j++){var c=n.kids.get(path[j]);if(!c){c={name:path[j],b:0,o:0,kids:new Map(),up:n,d:n.d+1};n.kids.set(path[j],c);}c.b+=b;c.o+=o;n=c;}}
 for(var i=0;i<g.s.length;i++){var p=[];for(var j=g.s[i].length-1;j>=0;j--)p.push(names[g.s[i][j]]);add(p,g.v[2*i],g.v[2*i+1]);}
 if(g.x)add(['(other: '+g.x[0]+' smaller stacks)'],g.x[1],g.x[2]);
 (function sort(n){n.list=Array.from(n.kids.values()).sort(function(a,b){return b.b-a.b||b.o-a.o;});n.list.forEach(sort);})(root);return root;}
// controls: the search box, reset button, found and info lines
function controls(div){var bar=div.querySelector('.flame-bar');
 function h(tag,cls,attrs,text){var e=document.createElement(tag);e.className=cls;for(var k in attrs)e.setAttribute(k,attrs[k]);if(text)e.textContent=text;bar.appendChild(document.createTextNode(' '));bar.appendChild(e);return e;}
 h('input','flame-search',{type:'search',placeholder:'search functions','aria-label':'search functions'});
 h('button','flame-reset',{type:'button'},'reset zoom');h('span','flame-found',{});
 var info=document.createElement('div');info.className='flame-info';info.textContent=HINT;div.appendChild(info);}
var HINT='hover a frame for its bytes; click to zoom (Escape: back)';
function Flame(div,names,g){controls(div);this.div=div;this.root=tree(names,g);this.focus=this.root;this.q='';
 this.info=div.querySelector('.flame-info');this.found=div.querySelector('.flame-found');
 this.W=Math.max(300,Math.round(div.clientWidth||1000));
 this.svg=el('svg',{width:'100%',preserveAspectRatio:'none'});div.appendChild(this.svg);var self=this;
 this.svg.addEventListener('click',function(e){var f=e.target.closest('g.frame');if(f)self.zoom(self.nodes[+f.getAttribute('data-i')]);});
 this.svg.addEventListener('mouseover',function(e){var f=e.target.closest('g.frame');if(f)self.hover(self.nodes[+f.getAttribute('data-i')]);});
 this.svg.addEventListener('mouseleave',function(){self.info.textContent=HINT;});
 div.querySelector('.flame-reset').addEventListener('click',function(){self.zoom(self.root);});
 div.querySelector('.flame-search').addEventListener('input',function(e){self.search(e.target.value);});
 div.addEventListener('keydown',function(e){if(e.key==='Escape')self.zoom(self.root);});
 this.draw();div.setAttribute('data-built','1');}
Flame.prototype.label=function(n){var f=this.focus,z=f!==this.root&&n!==f&&n.d>f.d?'; '+pct(n.b,f.b)+' of '+f.name:'';return n.name+' \u2014 '+fb(n.b)+' ('+pct(n.b,this.root.b)+'), '+fc(n.o)+' objects'+z;};
Flame.prototype.hover=function(n){this.info.textContent=this.label(n);};
Flame.prototype.zoom=function(n){this.focus=n||this.root;this.draw();};
Flame.prototype.match=function(n){return this.q!==''&&n.name.toLowerCase().indexOf(this.q)>=0;};
Flame.prototype.search=function(q){this.q=q.trim().toLowerCase();var self=this,b=0,o=0,k=0;
 if(this.q){(function walk(n){if(self.match(n)){b+=n.b;o+=n.o;k++;return;}n.list.forEach(walk);})(this.root);
  this.found.textContent=k?'matched: '+fb(b)+' ('+pct(b,this.root.b)+'), '+fc(o)+' objects':'no match';}
 else this.found.textContent='';this.draw();};
Flame.prototype.frame=function(n,x,w,y){var i=this.nodes.length;this.nodes.push(n);
 var g=el('g',{'class':'frame'+(n===this.root?' root':'')+(this.match(n)?' match':''),'data-name':n.name,'data-i':i});
 g.appendChild(el('title',{},this.label(n)));
 g.appendChild(el('rect',{x:x.toFixed(1),y:y,width:w.toFixed(1),height:ROW-1,rx:2,fill:n===this.root?'#d8d8d8':color(n.name)}));
 var fit=Math.floor((w-6)/6.6),t=n.name.length<=fit?n.name:fit>2?n.name.slice(0,fit-2)+'..':'';
 g.appendChild(el('text',{x:(x+3).toFixed(1),y:y+ROW-5},t));this.svg.appendChild(g);};
Flame.prototype.draw=function(){var svg=this.svg,W=this.W,self=this,depth=0;while(svg.firstChild)svg.removeChild(svg.firstChild);
 this.nodes=[];var path=[];for(var n=this.focus;n;n=n.up)path.unshift(n);
 path.forEach(function(n){self.frame(n,0,W,n.d*ROW);});depth=this.focus.d;
 var scale=this.focus.b>0?W/this.focus.b:0;
 (function kids(n,x){var cx=x;n.list.forEach(function(c){var w=c.b*scale;if(w>=0.5){self.frame(c,cx,w,c.d*ROW);if(c.d>depth)depth=c.d;kids(c,cx);}cx+=w;});})(this.focus,0);
 var H=(depth+1)*ROW;svg.setAttribute('viewBox','0 0 '+W+' '+H);svg.setAttribute('height',H);};
// the leaks and top stacks tables, from the in-use and alloc graphs
function table(t,names,g,what){if(!t)return;var tr=t.insertRow();['objects','bytes','allocated in','stack'].forEach(function(h){var th=document.createElement('th');th.textContent=h;tr.appendChild(th);});
 if(!g){t.insertRow().insertCell().textContent=what;return;}
 for(var i=0;i<g.s.length&&i<20;i++){var s=g.s[i].map(function(k){return names[k];}),fn=names[g.f[i]],j=Math.max(0,s.indexOf(fn));
  var r=t.insertRow(),c=r.insertCell();c.className='num';c.textContent=fc(g.v[2*i+1]);c=r.insertCell();c.className='num';c.textContent=fb(g.v[2*i]);r.insertCell().textContent=fn;
  c=r.insertCell();c.className='stack';c.textContent=s.slice(j,j+6).join(' \u2190 ')+(s.length>j+6?' \u2190 \u2026':'');}
 var more=(g.s.length>20?g.s.length-20:0)+(g.x?g.x[0]:0);if(more)t.insertRow().insertCell().textContent=more+' more stacks';}
function build(det){if(det.getAttribute('data-built'))return;det.setAttribute('data-built','1');
 var data=det.querySelector('script.flame-data');if(!data)return;var d=JSON.parse(data.textContent),byKind={};
 det.querySelectorAll('div.flame').forEach(function(div){var g=d.g[+div.getAttribute('data-g')];byKind[div.getAttribute('data-kind')]=g;new Flame(div,d.names,g);});
 table(det.querySelector('table.leaks'),d.names,byKind.inuse,'nothing sampled was live at exit');
 table(det.querySelector('table.top'),d.names,byKind.alloc,'no allocation sampled');}
function reveal(id){var s=document.getElementById(id);if(!s)return;var det=s.querySelector('details.proc');if(det&&!det.open)det.open=true;}
document.querySelectorAll('details.proc').forEach(function(det){det.addEventListener('toggle',function(){if(det.open)build(det);});if(det.open)build(det);});
document.querySelectorAll('#procs a').forEach(function(a){a.addEventListener('click',function(){reveal(a.getAttribute('href').slice(1));});});
if(location.hash)reveal(location.hash.slice(1));
})();
