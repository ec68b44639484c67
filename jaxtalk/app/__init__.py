"""`jaxtalk app`: a web page over exported models (`page`), its requests (`service`) and what
it accepts from them (`uploads`)."""
