/*
 * The staff group editor (admin page admin/groups_consumer/group/editor.html).
 *
 * The group's settings are plain inputs; the rule is a json-editor form (vendor/json-editor) over a recursive
 * schema built here from the criteria of the scope (GET /api/v1/criteria/?scope=...): a rule node is one of
 * all / any / not / a leaf of each criterion type, and a leaf's config fields come from the criterion's
 * ui_metadata (type, label, tooltip, initial value, options, depends_on) with the bounds of its config schema.
 * Changing the scope fetches the criteria again and rebuilds the rule form, keeping the rule.
 *
 * Preview and Save send the document to the API; a 400's errors[].field paths (rule.all[0].config.percent) are
 * shown on the input that renders that field, and listed in the banner.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("group-editor-config").textContent);
  const form = document.getElementById("group-editor");
  const banner = document.getElementById("editor-banner");
  const previewBox = document.getElementById("preview");
  const ruleHolder = document.getElementById("rule-editor");
  const criteriaStatus = document.getElementById("criteria-status");
  const groupsUrl = config.urls.groups;
  const NODE_KINDS = ["all", "any", "not"];
  const BOUNDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern",
    "minLength", "maxLength"];

  let ruleEditor = null;
  let ruleReady = Promise.resolve();  // settles when the rule form can be read (json-editor builds it async)
  let criteria = [];       // the available criterion types of the scope, in the order of the schema's oneOf
  let loadedScope = null;  // the scope parameter the criteria were fetched for
  let criteriaQueue = Promise.resolve();  // criteria loads, one after the other: the last scope typed wins
  let ruleErrors = {errors: [], value: null};  // the server's errors of the rule, and the rule they are about

  // ---- the API ---------------------------------------------------------------------------------------------

  async function call(method, url, body) {
    const response = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: {"Accept": "application/json", "Content-Type": "application/json",
                "X-CSRFToken": form.elements.csrfmiddlewaretoken.value},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = {detail: response.statusText}; }
    return {ok: response.ok, data: data};
  }

  // ---- the rule schema, from the criteria --------------------------------------------------------------------

  function pick(source, keys) {
    const out = {};
    keys.forEach(function (key) { if (source && source[key] !== undefined) out[key] = source[key]; });
    return out;
  }

  /** One config field: its ui_metadata element, refined by the bounds of its JSON schema property. */
  function fieldSchema(element, property) {
    const prop = property || {};
    const schema = {title: element.label};
    if (element.tooltip) schema.description = element.tooltip;
    const itemSchema = prop.items || {};
    switch (element.type) {
      case "integer":
      case "number":
        Object.assign(schema, {type: element.type}, pick(prop, BOUNDS));
        break;
      case "checkbox":
        Object.assign(schema, {type: "boolean", format: "checkbox"});
        break;
      case "select":
        if (element.max_count === 1) {
          Object.assign(schema, {type: typeof (element.options || [""])[0] === "number" ? "number" : "string",
                                 enum: element.options || []});
        } else {
          Object.assign(schema, {type: "array", uniqueItems: true, format: "checkbox",
                                 items: {type: itemSchema.type || "string", enum: element.options || []}});
        }
        break;
      case "list":
        Object.assign(schema, {type: "array", format: "table", items: Object.assign(
          {type: itemSchema.type || "string", title: element.label}, pick(itemSchema, BOUNDS))},
          pick(prop, ["minItems", "maxItems"]));
        break;
      default:
        Object.assign(schema, {type: "string"}, pick(prop, BOUNDS));
    }
    if (element.max_count && schema.type === "array") schema.maxItems = element.max_count;
    if (element.initial_value !== null && element.initial_value !== undefined) schema.default = element.initial_value;
    if (element.disabled) schema.readOnly = true;
    if (element.depends_on && element.depends_on.field_name) {
      schema.options = {dependencies: {[element.depends_on.field_name]: element.depends_on.value}};
    }
    return schema;
  }

  function leafSchema(criterion) {
    const properties = {};
    const declared = (criterion.config_schema && criterion.config_schema.properties) || {};
    (criterion.ui_metadata || []).forEach(function (element) {
      properties[element.name] = fieldSchema(element, declared[element.name]);
    });
    return {
      title: criterion.name + (criterion.description ? ": " + criterion.description : ""),
      type: "object",
      additionalProperties: false,
      required: ["type", "operator", "config"],
      properties: {
        type: {type: "string", enum: [criterion.name], default: criterion.name, options: {hidden: true}},
        operator: {type: "string", title: "Operator", enum: criterion.operators, default: criterion.operators[0]},
        config: {type: "object", title: "Config", additionalProperties: false, properties: properties,
                 required: (criterion.ui_metadata || []).filter(function (e) { return e.required; })
                   .map(function (e) { return e.name; }),
                 options: {remove_empty_properties: true, disable_collapse: true}},
      },
      options: {disable_collapse: true},
    };
  }

  function ruleSchema() {
    const list = function (kind, title) {
      return {title: title, type: "object", additionalProperties: false, required: [kind],
              options: {disable_collapse: true},
              properties: {[kind]: {type: "array", title: title,
                                    items: {$ref: "#/definitions/node", title: "condition"}}}};
    };
    const definitions = {
      node: {title: "condition", oneOf: [{$ref: "#/definitions/all"}, {$ref: "#/definitions/any"},
                                         {$ref: "#/definitions/not"}].concat(
        criteria.map(function (c) { return {$ref: "#/definitions/leaf_" + c.name}; }))},
      all: list("all", "all of (and)"),
      any: list("any", "any of (or)"),
      not: {title: "not", type: "object", additionalProperties: false, required: ["not"],
            options: {disable_collapse: true}, properties: {not: {$ref: "#/definitions/node", title: "not"}}},
    };
    criteria.forEach(function (c) { definitions["leaf_" + c.name] = leafSchema(c); });
    return {$ref: "#/definitions/node", title: "Rule", definitions: definitions};
  }

  /** The index of a rule node's variant in the schema's oneOf (-1: none of them). */
  function variantOf(node) {
    if (!node || typeof node !== "object") return -1;
    for (let i = 0; i < NODE_KINDS.length; i += 1) if (NODE_KINDS[i] in node) return i;
    const index = criteria.findIndex(function (c) { return c.name === node.type; });
    return index < 0 ? -1 : NODE_KINDS.length + index;
  }

  function buildRuleEditor(rule) {
    if (ruleEditor) ruleEditor.destroy();
    ruleEditor = new window.JSONEditor(ruleHolder, {
      schema: ruleSchema(), startval: rule, theme: "html", iconlib: null,
      disable_edit_json: true, disable_properties: true, disable_array_reorder: true,
      disable_array_delete_all_rows: true, disable_array_delete_last_row: true, prompt_before_delete: false,
      no_additional_properties: true, keep_oneof_values: false, show_errors: "interaction",
    });
    const editor = ruleEditor;
    ruleErrors = {errors: [], value: null};
    ruleReady = new Promise(function (resolve) { editor.on("ready", resolve); });
    // json-editor shows its own validation after every change (a frame later): the server's errors stay
    // over it until the rule they are about is edited; json-editor's are shown without the summary of each
    // oneOf ("validates against 0 of the schemas"), the field at fault in the chosen branch saying it better.
    editor.on("change", function () {
      if (ruleErrors.errors.length && JSON.stringify(editor.getValue()) === ruleErrors.value) {
        showOnFields(editor, ruleErrors.errors, true);
        return;
      }
      ruleErrors = {errors: [], value: null};
      showOnFields(editor, editor.validate().filter(function (error) { return error.property !== "oneOf"; }), false);
      markPreviewStale();
    });
  }

  /** Errors on the fields of the rule form, routed from its root (json-editor's own public
   * showValidationErrors also hands the whole list to every field, which hides the messages of fields inside
   * a oneOf branch); ``everywhere``: on fields not touched yet too. */
  function showOnFields(editor, errors, everywhere) {
    if (everywhere) Object.values(editor.editors).forEach(function (field) { if (field) field.is_dirty = true; });
    editor.root.showValidationErrors(errors);
  }

  /** Shows the server's errors of the rule on their fields, in place of every other error of the rule. */
  function setRuleErrors(errors) {
    ruleErrors = {errors: errors, value: JSON.stringify(ruleEditor.getValue())};
    showOnFields(ruleEditor, errors, true);
  }

  function scopeParameter() {
    const type = form.elements.scope_type.value;
    const key = form.elements.scope_key.value.trim();
    if (type === "instance") return "instance";
    return key ? type + ":" + key : null;
  }

  /** The criteria of the scope (all criteria while a scope has no key yet), then the rule form over them. */
  async function loadCriteria() {
    const scope = scopeParameter();
    if (ruleEditor && scope === loadedScope) return;
    await ruleReady;
    const rule = ruleEditor ? ruleEditor.getValue() : config.document.rule;
    const answer = await call("GET", config.urls.criteria + (scope ? "?scope=" + encodeURIComponent(scope) : ""));
    const scopeRows = form.querySelectorAll('.form-row[data-field^="scope."]');
    scopeRows.forEach(clearFieldErrors);
    if (!answer.ok) {
      addFieldError(settingsRow(scope ? "scope.key" : "scope.type"), answer.data.detail || "unknown scope");
      if (ruleEditor) return;
    } else {
      criteria = answer.data.filter(function (c) { return c.available; });
      const broken = answer.data.filter(function (c) { return !c.available; });
      criteriaStatus.textContent = "Criteria of " + (scope || "every scope") + ": " +
        criteria.map(function (c) { return c.name; }).join(", ") +
        (broken.length ? " (unavailable: " + broken.map(function (c) { return c.name + ": " + c.error; })
          .join("; ") + ")" : "");
    }
    loadedScope = scope;
    buildRuleEditor(rule);
  }

  /** Loads the criteria of the scope as it is once the loads queued before are done. */
  function reloadCriteria() {
    criteriaQueue = criteriaQueue.then(loadCriteria).catch(function (error) {
      showBanner("error", "Could not load the criteria: " + error);
    });
    return criteriaQueue;
  }

  // ---- the document ----------------------------------------------------------------------------------------

  function fill(doc) {
    const f = form.elements;
    f.name.value = doc.name || "";
    f.scope_type.value = (doc.scope && doc.scope.type) || "instance";
    f.scope_key.value = (doc.scope && doc.scope.key) || "";
    f.enabled.checked = doc.enabled !== false;
    f.frozen.checked = doc.frozen === true;
    f.exclusive_set.value = doc.exclusive_set || "";
    f.priority.value = doc.priority === undefined || doc.priority === null ? 0 : doc.priority;
    f.refresh.value = doc.refresh || "";
  }

  function documentOf() {
    const f = form.elements;
    const scope = {type: f.scope_type.value};
    if (scope.type !== "instance") scope.key = f.scope_key.value.trim();
    const priority = f.priority.value.trim();
    return {
      name: f.name.value.trim(), scope: scope, rule: ruleEditor.getValue(),
      enabled: f.enabled.checked, frozen: f.frozen.checked,
      exclusive_set: f.exclusive_set.value.trim() || null,
      priority: /^-?\d+$/.test(priority) ? Number(priority) : priority,
      refresh: f.refresh.value.trim() || null,
    };
  }

  // ---- errors on their fields ------------------------------------------------------------------------------

  /** A rule error's path as json-editor names it: rule.all[0].config.percent -> root.oneOf[0].all.0.oneOf[k]
   * .config.percent, k being the variant of each rule node on the way (json-editor routes an error into the
   * branch of a oneOf by that index). */
  function rulePath(field, rule) {
    const parts = field.replace(/\[(\d+)\]/g, ".$1").split(".").slice(1);
    let path = "root";
    let node = rule;
    let state = "node";  // what the next part is inside: a rule node, an all/any list, or a leaf
    parts.forEach(function (part) {
      if (state === "node") {
        const variant = variantOf(node);
        if (variant >= 0) path += ".oneOf[" + variant + "]";
        state = part === "not" ? "node" : (part === "all" || part === "any") ? "list" : "leaf";
      } else if (state === "list") {
        state = "node";
      }
      path += "." + part;
      node = node && typeof node === "object" ? node[part] : undefined;
    });
    return path;
  }

  function clearFieldErrors(element) {
    element.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
    element.classList.remove("has-error");
    element.querySelectorAll(".has-error").forEach(function (el) { el.classList.remove("has-error"); });
  }

  function addFieldError(row, text) {
    const message = document.createElement("div");
    message.className = "field-error errorlist";
    message.setAttribute("role", "alert");
    message.textContent = text;
    row.classList.add("has-error");
    row.appendChild(message);
  }

  /** The row rendering a settings field (exact path, else the first one under it, e.g. scope -> scope.type). */
  function settingsRow(field) {
    const rows = Array.from(form.querySelectorAll(".form-row[data-field]"));
    return rows.find(function (row) { return row.dataset.field === field; }) ||
      rows.find(function (row) { return row.dataset.field.startsWith(field + "."); });
  }

  function showErrors(data) {
    clearFieldErrors(form);
    const errors = (data && data.errors) || [];
    const onRule = [];
    errors.forEach(function (error) {
      const field = error.field || "";
      if (field === "rule" || field.startsWith("rule.")) {
        onRule.push({path: rulePath(field, ruleEditor.getValue()), property: "server", message: error.message});
        return;
      }
      const row = settingsRow(field);
      if (row) addFieldError(row, error.message);
    });
    if (ruleEditor && onRule.length) setRuleErrors(onRule);
    showBanner("error", (data && data.detail) || "The request failed.", errors);
  }

  function showBanner(kind, text, errors) {
    banner.hidden = false;
    banner.className = "editor-banner " + (kind === "error" ? "errornote" : "success");
    banner.textContent = text;
    if (errors && errors.length) {
      const list = document.createElement("ul");
      errors.forEach(function (error) {
        const item = document.createElement("li");
        item.textContent = error.field + ": " + error.message;
        list.appendChild(item);
      });
      banner.appendChild(list);
    }
  }

  // ---- preview and save ------------------------------------------------------------------------------------

  function sampleText(count, sample) {
    return count + (sample && sample.length ? " (" + sample.join(", ") + (count > sample.length ? ", ..." : "") +
      ")" : "");
  }

  /** The document the preview on screen is about (JSON), to tell when the form no longer matches it. */
  let previewedDocument = null;

  /** Marks the preview out of date while the form differs from the document it previewed. */
  function markPreviewStale() {
    if (previewedDocument === null || previewBox.hidden) return;
    const stale = JSON.stringify(documentOf()) !== previewedDocument;
    previewBox.classList.toggle("preview-is-stale", stale);
    previewBox.querySelector(".preview-stale").hidden = !stale;
  }

  function renderPreview(preview, previewed) {
    previewedDocument = JSON.stringify(previewed);
    previewBox.hidden = false;
    previewBox.classList.remove("preview-is-stale");
    previewBox.replaceChildren();
    const lines = [
      ["preview-count", "Members after saving: " + preview.members_after +
        (config.group_id ? " (now " + preview.members_before + ")" : "")],
      ["preview-qualifying", "Users of the scope the rule matches: " + preview.qualifying],
      ["preview-sample", "Members (lowest ids): " + (preview.sample.join(", ") || "none")],
      ["preview-joined", "Would join: " + sampleText(preview.changes.joined, preview.changes.joined_sample)],
      ["preview-left", "Would leave: " + sampleText(preview.changes.left, preview.changes.left_sample)],
    ];
    const title = document.createElement("h2");
    title.textContent = "Preview of " + preview.group + " (nothing saved)";
    const stale = document.createElement("p");
    stale.className = "preview-stale";
    stale.hidden = true;
    stale.textContent = "The form changed since this preview: preview again to see what saving would do now.";
    previewBox.append(title, stale);
    lines.forEach(function (line) {
      const p = document.createElement("p");
      p.className = line[0];
      p.textContent = line[1];
      previewBox.appendChild(p);
    });
    const siblings = Object.keys(preview.siblings || {});
    if (siblings.length) {
      const list = document.createElement("ul");
      list.className = "preview-siblings";
      siblings.forEach(function (name) {
        const change = preview.siblings[name];
        const item = document.createElement("li");
        item.textContent = name + ": " + sampleText(change.joined, change.joined_sample) + " join, " +
          sampleText(change.left, change.left_sample) + " leave";
        list.appendChild(item);
      });
      const p = document.createElement("p");
      p.textContent = "Other groups of the exclusive set affected:";
      previewBox.append(p, list);
    }
  }

  /** Runs ``action`` with Preview and Save disabled (one request at a time). */
  async function busy(action) {
    const buttons = [document.getElementById("preview-button"), document.getElementById("save-button")];
    buttons.forEach(function (button) { button.disabled = true; });
    try {
      await criteriaQueue;
      await ruleReady;
      await action();
    } finally {
      buttons.forEach(function (button) { button.disabled = false; });
    }
  }

  async function preview() {
    const url = config.group_id ? groupsUrl + config.group_id + "/preview/" : config.urls.preview;
    const previewed = documentOf();
    const answer = await call("POST", url, previewed);
    if (!answer.ok) {
      previewBox.hidden = true;
      showErrors(answer.data);
      return;
    }
    clearFieldErrors(form);
    setRuleErrors([]);
    banner.hidden = true;
    renderPreview(answer.data, previewed);
  }

  async function save() {
    const answer = config.group_id
      ? await call("PUT", groupsUrl + config.group_id + "/", documentOf())
      : await call("POST", groupsUrl, documentOf());
    if (!answer.ok) {
      showErrors(answer.data);
      return;
    }
    window.location.assign(config.urls.edit.replace(/\/0\/editor\/$/, "/" + answer.data.id + "/editor/") +
      "?saved=1");
  }

  async function remove() {
    if (!window.confirm("Delete this group with its memberships and change log? (Disable it to keep them.)")) {
      return;
    }
    const answer = await call("DELETE", groupsUrl + config.group_id + "/");
    if (!answer.ok) {
      showErrors(answer.data);
      return;
    }
    window.location.assign(config.urls.groups_admin);
  }

  async function loadMembers() {
    const rows = document.getElementById("members-rows");
    if (!rows) return;
    const answer = await call("GET", groupsUrl + config.group_id + "/members/");
    if (!answer.ok) return;
    answer.data.results.forEach(function (member) {
      const row = document.createElement("tr");
      [member.user_id, member.joined_at].forEach(function (value) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.appendChild(cell);
      });
      rows.appendChild(row);
    });
    if (!answer.data.results.length) rows.innerHTML = "<tr><td colspan=2>No members.</td></tr>";
  }

  fill(config.document);
  if (new URLSearchParams(window.location.search).has("saved")) showBanner("success", "Saved.");
  form.addEventListener("input", markPreviewStale);
  form.elements.scope_type.addEventListener("change", reloadCriteria);
  form.elements.scope_key.addEventListener("change", reloadCriteria);
  document.getElementById("preview-button").addEventListener("click", function () { busy(preview); });
  const deleteButton = document.getElementById("delete-button");
  if (deleteButton) deleteButton.addEventListener("click", function () { busy(remove); });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    busy(save);
  });
  reloadCriteria();
  loadMembers();
}());
