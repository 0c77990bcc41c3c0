// Stands in for the sources of a library folder that is still empty (see sy_library).
