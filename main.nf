#!/usr/bin/env nextflow
/*
 * gliocascade: brain tumour segmentation for whole cohorts with the two-stage cascaded U-Net.
 *
 *   segment (default): samplesheet -> convert -> preprocess -> predict -> postprocess -> evaluate -> report
 *   train:             samplesheet with seg -> k folds x seeds -> out-of-fold predictions -> tune-threshold
 *
 * The test profile makes phantoms, trains the tiny cascade on them and segments held-out phantoms.
 */
include { validateParameters    } from 'plugin/nf-schema'
include { PREPARE_INPUTS        } from './subworkflows/local/prepare_inputs'
include { PHANTOM_INPUT         } from './subworkflows/local/phantom_input'
include { GLIOCASCADE_SEGMENT   } from './workflows/segment'
include { GLIOCASCADE_TRAIN     } from './workflows/train'

workflow {
    main:
    validateParameters()
    if (params.mode != 'segment' && params.mode != 'train') {
        error("--mode must be 'segment' or 'train', not '${params.mode}'")
    }
    if (!params.input && !params.phantoms) {
        error("give --input SAMPLESHEET (or use -profile test, which makes phantoms)")
    }

    if (params.input) {
        PREPARE_INPUTS(params.input)
        cases = PREPARE_INPUTS.out.cases
        transforms = PREPARE_INPUTS.out.transforms
        references = PREPARE_INPUTS.out.references
        refused = PREPARE_INPUTS.out.failures
        records = PREPARE_INPUTS.out.records
        train_cases = cases
        train_references = references
    }
    else {
        PHANTOM_INPUT(params.phantoms, params.phantoms_heldout)
        cases = PHANTOM_INPUT.out.heldout
        transforms = PHANTOM_INPUT.out.heldout_transforms
        references = PHANTOM_INPUT.out.heldout_references
        refused = channel.empty()
        records = channel.empty()
        train_cases = PHANTOM_INPUT.out.train
        train_references = PHANTOM_INPUT.out.train_references
    }

    if (params.mode == 'train') {
        GLIOCASCADE_TRAIN(trainable(train_cases), train_references)
    }
    else if (params.model) {
        models = channel.value(modelFolders(params.model))
        GLIOCASCADE_SEGMENT(cases, transforms, references, models, refused, records)
    }
    else if (!params.input) {
        GLIOCASCADE_TRAIN(train_cases, train_references)
        GLIOCASCADE_SEGMENT(cases, transforms, references, GLIOCASCADE_TRAIN.out.models.collect(), refused, records)
    }
    else {
        error("segment mode needs --model DIR[,DIR...] (no pretrained weights ship; train with --mode train)")
    }

    // the gliocascade version every process ran, from the processes' versions topic
    channel.topic('versions')
        .map { process, tool, version -> "${process.tokenize(':').last()}:\n  ${tool}: ${version}\n" }
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}

// --model: comma-separated model folders or globs (e.g. results/models/tuned/model_*).
def modelFolders(spec) {
    def folders = spec.toString().tokenize(',').collectMany { m ->
        def found = file(m.trim(), type: 'dir')
        return found instanceof List ? found : [found]
    }
    if (!folders) {
        error("--model ${spec}: no model folder found")
    }
    return folders
}

// Training reads BraTS-space rows with a seg: rows must be space=brats.
def trainable(cases) {
    return cases.map { meta, t1, t1ce, t2, flair, mask ->
        if (meta.space != 'brats') {
            error("--mode train: case ${meta.id} must be in BraTS space (space=brats) with its seg")
        }
        return [meta, t1, t1ce, t2, flair, mask]
    }
}
