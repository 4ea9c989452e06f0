# A small Flask site for the density benchmark (bench part 8): it imports
# what a real one does (Flask, Jinja2, Werkzeug, json, email, http.client),
# so each process costs what a real small site costs.
import email.utils
import http.client
import json

from flask import Flask, render_template_string

app = Flask(__name__)
PAGE = "<h1>{{ name }}</h1><p>{{ when }}</p><pre>{{ data }}</pre>"


@app.route("/")
def index():
    return render_template_string(PAGE, name=app.name, when=email.utils.formatdate(), data=json.dumps({"status": http.client.OK}))
